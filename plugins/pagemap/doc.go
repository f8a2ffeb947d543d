// Package pagemap is a hint provider that needs nothing from the guest:
// it reports as zero (hint.MeaningZero) the guest RAM pages the host never
// populated, or that were punched out of the RAM file since (free page
// reporting and balloon inflation do that), so the engine sends them as
// zero runs without reading them.
//
//	VMM process (VM.PID)                         this provider
//	guest RAM ── mmap(MAP_SHARED) at HostAddr    Configure: reopen /proc/self/fd/N (own file offset),
//	    │                                                   read /proc/PID/maps: how is each region mapped?
//	    └── memfd (VM.Files[File], at Offset) ◄─ Hints: lseek(SEEK_DATA / SEEK_HOLE) per extent ─► holes
//	                                                        MAP_PRIVATE only: drop hole pages the VMM has
//	/proc/PID/pagemap ◄──── PAGEMAP_SCAN (6.7+) or entries ─ present or swapped in its page tables
//
// # Why file holes, and why they are exact
//
// Guest RAM is a memfd (tmpfs) mapped MAP_SHARED by the VMM, so the
// file's page cache is the guest's memory. lseek(SEEK_DATA/SEEK_HOLE) on
// tmpfs walks that page cache (mapping_seek_hole_data): every page ever
// written has a folio there, or a swap entry once swapped out, and both
// count as data; a range with neither, or with a folio that was allocated
// (fallocate) but never made up to date, reads as zeros. Punching
// (FALLOC_FL_PUNCH_HOLE, MADV_REMOVE) removes the folios, so punched
// pages are holes again. The walk costs one pair of lseek calls per data
// extent, never a read of the memory: an 8 GiB guest that never touched
// its RAM is one lseek. A filesystem without SEEK_HOLE support (hugetlbfs,
// for instance) reports everything as data: no hints, never wrong ones.
//
// # Why /proc/PID/pagemap is not enough, and where it is used
//
// For a shared mapping, "not present" in the VMM's page tables does not
// mean zero: a page can sit in the page cache without being mapped in
// this process (written with pwrite, written through another mapping such
// as the destination transport's, unmapped by MADV_DONTNEED or by reclaim),
// and a swapped-out shmem page leaves no swap entry in the page table at
// all. So pagemap never proves a page zero here; mincore has the same
// swap problem. It is used only to veto: when the VMM maps a region
// MAP_PRIVATE (seen in /proc/PID/maps), the guest's writes land in
// anonymous copy-on-write pages the file does not see, so a file hole is
// zero only if the VMM's page table has nothing there either (no present
// page, no swap or migration entry, no marker). Removing pages from the
// zero set can never make it wrong. method = "pagemap" applies that veto
// to shared mappings too; it only narrows races there.
//
// # Races
//
// The engine asks after its dirty sync, with dirty logging running: a
// page the guest or the VMM writes after the request travels anyway. A
// page written while a scan runs may or may not be reported. A page that
// was populated before the scan started is never reported: its folio or
// swap entry stays in the page cache (swap-out, swap-in, migration and
// splitting replace entries atomically) unless the page is punched, and
// then it is zero.
//
// The provider opens its own description of each RAM file, so its lseek
// calls never move the file offset the VMM and the other plugins share.
// Each call holds the file's inode lock for its walk of the page cache, so
// a punch (fallocate) by the VMM waits at most for one call.
//
// # Cost
//
// BenchmarkPagemap, 8 GiB, this machine (2 vCPUs, Linux 6.18, nested):
// untouched 4 µs; 5% of the pages written at random places (about 100 000
// extents, the worst case) 127 ms with file holes alone, 135 ms with the
// page-table veto through PAGEMAP_SCAN, 240 ms reading pagemap entries.
// That is the price of two syscalls per extent; guests whose memory is in
// large extents cost proportionally less.
//
// The package is a plain Go package; cmd/ferry-hint-pagemap serves it
// over go-plugin.
package pagemap
