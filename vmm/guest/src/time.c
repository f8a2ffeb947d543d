/*
 * time.c — find the TSC frequency, in this order:
 *   1. CPUID 0x40000010 EAX (kHz) when the hypervisor leaf 0x40000000 says
 *      it exists (Ferry's VMM; VMware convention);
 *   2. CPUID 0x15 (crystal ratio) or 0x16 (base MHz) when plausible;
 *   3. a ~40 ms calibration against PIT channel 0 (ports 0x40/0x43, read
 *      back with the latch command), from ring 3 thanks to IOPL 3.
 * It assumes an invariant TSC and cannot detect a wrong hypervisor value.
 * Without any of the three it guesses 2 GHz and says so.
 */
#include "guest.h"

u64 tsc_khz;
const char *tsc_source;

#define PIT_HZ 1193182UL
#define PIT_MS 40UL
#define PLAUSIBLE(khz) ((khz) >= 100000UL && (khz) <= 10000000UL)

/* Read by the ring-0 stub: CPUID from ring 3 may not reach the hypervisor. */
extern u32 boot_hv_tsc_khz;

static u64 from_hypervisor(void)
{
	return boot_hv_tsc_khz;
}

static u64 from_cpuid_15_16(const char **src)
{
	u32 r[4], max;
	cpuid(0, 0, r);
	max = r[0];
	if (max >= 0x15) {
		cpuid(0x15, 0, r);  /* EAX denominator, EBX numerator, ECX crystal Hz */
		if (r[0] && r[1] && r[2]) {
			*src = "cpuid-15h";
			return (u64)r[2] / 1000 * r[1] / r[0];
		}
	}
	if (max >= 0x16) {
		cpuid(0x16, 0, r);  /* EAX base MHz */
		if (r[0]) {
			*src = "cpuid-16h";
			return (u64)(r[0] & 0xffff) * 1000;
		}
	}
	return 0;
}

/* pit_read latches and reads PIT channel 0; *tsc is the TSC at the middle
 * of the three port accesses (each one is a VM exit). */
static u32 pit_read(u64 *tsc)
{
	u64 t0 = rdtsc();
	outb(0x43, 0x00);                       /* latch channel 0 */
	u32 lo = inb(0x40);
	u32 hi = inb(0x40);
	*tsc = t0 + (rdtsc() - t0) / 2;
	return lo | hi << 8;
}

/* Channel 0 in mode 0 (one-shot) counts down from 0xffff at PIT_HZ; watch
 * it for PIT_MS and count TSC ticks. Channel 2 and its gate on port 0x61
 * are not used: QEMU microvm has no port 0x61. Returns 0 on any oddity. */
static u64 pit_once(void)
{
	u64 t0, t1;
	outb(0x43, 0x30);                       /* ch 0, lo/hi, mode 0, binary */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
	u32 c0 = pit_read(&t0), c1 = c0;
	for (int i = 0; i < 1000 && c1 == c0; i++)  /* start once it counts */
		c1 = pit_read(&t1);
	if (c1 >= c0)
		return 0;
	c0 = c1;
	t0 = t1;
	for (int i = 0; i < 100000; i++) {
		c1 = pit_read(&t1);
		if (c1 > c0 || c0 - c1 >= PIT_HZ * PIT_MS / 1000)
			break;
	}
	if (c1 >= c0 || c0 - c1 < PIT_HZ * PIT_MS / 1000)
		return 0;
	return (t1 - t0) * PIT_HZ / ((c0 - c1) * 1000UL);
}

static u64 from_pit(void)
{
	for (int try = 0; try < 3; try++) {
		u64 khz = pit_once();
		if (khz)
			return khz;
	}
	return 0;
}

void time_init(void)
{
	const char *src = NULL;
	u64 khz = from_hypervisor();
	if (PLAUSIBLE(khz)) {
		tsc_khz = khz;
		tsc_source = "cpuid-40000010h";
		return;
	}
	khz = from_cpuid_15_16(&src);
	if (PLAUSIBLE(khz)) {
		tsc_khz = khz;
		tsc_source = src;
		return;
	}
	khz = from_pit();
	if (PLAUSIBLE(khz)) {
		tsc_khz = khz;
		tsc_source = "pit";
		return;
	}
	tsc_khz = 2000000;
	tsc_source = "guess";
}
