/*
 * mem.c — read the PVH hvm_start_info and its memory map, then give all RAM
 * to the buddy allocator except what is reserved:
 *   - everything below 1 MiB,
 *   - the guest image [_start, _end) (code, data, page tables, stacks),
 *   - start_info, the memory map, the command line, the module list,
 *   - the allocator's own bitmaps, carved from the first RAM that fits.
 * RAM above the identity map's limit (entry.S) is left out with a warning.
 * It cannot: hot-add memory, use more than MAX_RAM_REGIONS RAM entries or
 * MAX_RESERVED reserved ranges.
 */
#include "mem.h"
#include "buddy.h"

#define PVH_MAGIC 0x336ec578
#define MAX_RESERVED 16
#ifndef MAP_GIB
#define MAP_GIB 64
#endif

struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;
	u32 memmap_entries;
	u32 reserved;
};

struct hvm_memmap_entry {
	u64 addr;
	u64 size;
	u32 type;
	u32 reserved;
};

extern char _start[], _end[], pml4_1g[];
extern u64 boot_pml4;

struct boot_info boot;
static struct region reserved[MAX_RESERVED];
static u32 nreserved;

static void reserve(u64 start, u64 bytes)
{
	if (bytes == 0)
		return;
	if (nreserved == MAX_RESERVED)
		fatal("too many reserved ranges");
	reserved[nreserved].start = ALIGN_DOWN(start, PAGE_SIZE);
	reserved[nreserved].end = ALIGN_UP(start + bytes, PAGE_SIZE);
	nreserved++;
	for (u32 i = nreserved - 1; i > 0 && reserved[i].start < reserved[i - 1].start; i--) {
		struct region t = reserved[i];
		reserved[i] = reserved[i - 1];
		reserved[i - 1] = t;
	}
}

void boot_parse(u64 start_info_paddr)
{
	const struct hvm_start_info *si = (const void *)start_info_paddr;
	if (start_info_paddr == 0 || si->magic != PVH_MAGIC)
		fatal("no PVH start_info at 0x%lx (magic 0x%x)", start_info_paddr, si ? si->magic : 0);
	if (si->version < 1 || si->memmap_paddr == 0 || si->memmap_entries == 0)
		fatal("start_info version %u has no memory map", si->version);
	boot.start_info = start_info_paddr;
	boot.memmap = si->memmap_paddr;
	boot.memmap_entries = si->memmap_entries;
	boot.cmdline = si->cmdline_paddr ? (const char *)si->cmdline_paddr : "";
	boot.map_limit = (boot_pml4 == (u64)pml4_1g ? 512UL : (u64)MAP_GIB) * GIB;
	boot.map_pages = boot_pml4 == (u64)pml4_1g ? "1 GiB" : "2 MiB";

	reserve(0, MIB);
	reserve((u64)_start, _end - _start);
	reserve(start_info_paddr, sizeof(*si));
	reserve(si->memmap_paddr, si->memmap_entries * sizeof(struct hvm_memmap_entry));
	if (si->cmdline_paddr)
		reserve(si->cmdline_paddr, strlen(boot.cmdline) + 1);
	if (si->nr_modules && si->modlist_paddr)
		reserve(si->modlist_paddr, si->nr_modules * 32UL);

	const struct hvm_memmap_entry *e = (const void *)si->memmap_paddr;
	for (u32 i = 0; i < si->memmap_entries; i++) {
		if (e[i].type != 1 || e[i].size == 0)
			continue;
		if (boot.nram == MAX_RAM_REGIONS)
			fatal("more than %d RAM regions", MAX_RAM_REGIONS);
		boot.ram_bytes += e[i].size;
		u32 j = boot.nram++;
		boot.ram[j].start = e[i].addr;
		boot.ram[j].end = e[i].addr + e[i].size;
		for (; j > 0 && boot.ram[j].start < boot.ram[j - 1].start; j--) {
			struct region t = boot.ram[j];
			boot.ram[j] = boot.ram[j - 1];
			boot.ram[j - 1] = t;
		}
	}
	if (boot.nram == 0)
		fatal("memory map has no RAM");
}

/* usable clips a RAM region to whole pages below the map limit. */
static struct region usable(struct region r)
{
	r.start = ALIGN_UP(r.start, PAGE_SIZE);
	r.end = ALIGN_DOWN(MIN(r.end, boot.map_limit), PAGE_SIZE);
	if (r.end < r.start)
		r.end = r.start;
	return r;
}

/* carve finds the lowest page-aligned RAM range of size bytes that
 * overlaps nothing reserved. */
static u64 carve(u64 size)
{
	for (u32 i = 0; i < boot.nram; i++) {
		struct region r = usable(boot.ram[i]);
		u64 at = r.start;
		for (u32 j = 0; j < nreserved; j++)
			if (at < reserved[j].end && at + size > reserved[j].start)
				at = reserved[j].end;   /* sorted: only moves up */
		if (at + size <= r.end)
			return at;
	}
	fatal("no room for %lu bytes of allocator metadata", size);
}

/* free_region hands [r.start, r.end) minus the reserved ranges over. */
static void free_region(struct region r)
{
	u64 cur = r.start;
	for (u32 j = 0; j < nreserved && cur < r.end; j++) {
		if (reserved[j].end <= cur || reserved[j].start >= r.end)
			continue;
		if (reserved[j].start > cur)
			buddy_add_range(cur >> PAGE_SHIFT, reserved[j].start >> PAGE_SHIFT);
		cur = MAX(cur, reserved[j].end);
	}
	if (cur < r.end)
		buddy_add_range(cur >> PAGE_SHIFT, r.end >> PAGE_SHIFT);
}

void mem_init(void)
{
	const struct hvm_memmap_entry *e = (const void *)boot.memmap;
	for (u32 i = 0; i < boot.memmap_entries; i++)
		kprintf("memmap: 0x%012lx-0x%012lx type %u\n", e[i].addr, e[i].addr + e[i].size, e[i].type);
	u64 top = boot.ram[boot.nram - 1].end;
	if (top > boot.map_limit)
		kprintf("warning: RAM above %lu GiB is not identity mapped and left unused\n", boot.map_limit / GIB);
	u64 npfn = MIN(top, boot.map_limit) >> PAGE_SHIFT;

	u64 t0 = rdtsc();
	u64 bytes = buddy_meta_bytes(npfn);
	u64 meta = carve(bytes);
	reserve(meta, bytes);
	buddy_init((void *)meta, npfn);
	for (u32 i = 0; i < boot.nram; i++)
		free_region(usable(boot.ram[i]));
	u64 t1 = rdtsc();

	u64 free = buddy_free_pages();
	kprintf("buddy: %lu free pages (%lu MiB), %lu order-10 blocks, metadata %lu KiB at 0x%lx, init %lu us\n",
		free, free >> 8, buddy_free_count(BUDDY_MAX_ORDER), bytes >> 10, meta, tsc_to_us(t1 - t0));
}
