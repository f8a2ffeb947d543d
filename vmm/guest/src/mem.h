/*
 * mem.h — what the guest learned from PVH boot (start_info, memory map,
 * command line) and the set-up of the page allocator over it.
 */
#ifndef MEM_H
#define MEM_H
#include "guest.h"

#define MAX_RAM_REGIONS 64

struct region {
	u64 start;
	u64 end;    /* exclusive */
};

struct boot_info {
	const char *cmdline;        /* "" when the VMM gave none */
	struct region ram[MAX_RAM_REGIONS]; /* memmap type 1, sorted */
	u32 nram;
	u64 ram_bytes;              /* sum of type-1 entries */
	u64 map_limit;              /* identity map covers [0, map_limit) */
	const char *map_pages;      /* "1 GiB" or "2 MiB" */
	u64 start_info;
	u64 memmap;
	u32 memmap_entries;
};

extern struct boot_info boot;

void boot_parse(u64 start_info_paddr);
void mem_init(void);

#endif
