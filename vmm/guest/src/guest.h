/*
 * guest.h — shared definitions for the ring-3 part of the Ferry test guest:
 * fixed-size types, port I/O and CPU helpers, and the small "libc" that
 * lib.c, serial.c and time.c provide.
 *
 * Everything here runs in ring 3 with IOPL 3 (port I/O allowed, no hlt, no
 * control registers). There is one vCPU and no interrupts, so nothing is
 * reentrant and nothing needs locking.
 */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;

#define NULL ((void *)0)
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define MIB (1UL << 20)
#define GIB (1UL << 30)

#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((u64)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((u64)(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define NORETURN __attribute__((noreturn))
#define PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Exit codes written to port 0xf4 (README.md, "Exit codes"). */
enum {
	EXIT_OK = 0,
	EXIT_SETUP = 1,
	EXIT_VERIFY = 2,
	EXIT_FAULT = 3,
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

static inline void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* lib.c */
void *memset(void *dst, int c, u64 n);
void *memcpy(void *dst, const void *src, u64 n);
int memcmp(const void *a, const void *b, u64 n);
u64 strlen(const char *s);
int str_eq(const char *s, u64 n, const char *lit);
int parse_u64(const char *s, u64 n, u64 *out);
u64 xorshift64(u64 *state);
u32 order_for_pages(u64 pages);

/* serial.c */
void serial_init(void);
void serial_write(const char *s, u64 n);
int kprintf(const char *fmt, ...) PRINTF(1, 2);
void poweroff(u32 code) NORETURN;
void fatal(const char *fmt, ...) PRINTF(1, 2) NORETURN;

/* time.c */
extern u64 tsc_khz;
extern const char *tsc_source;
void time_init(void);
static inline u64 tsc_to_us(u64 ticks) { return ticks * 1000 / tsc_khz; }
static inline u64 tsc_to_ms(u64 ticks) { return ticks / tsc_khz; }
static inline u64 tsc_hz(void) { return tsc_khz * 1000; }

#endif
