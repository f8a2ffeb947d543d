/*
 * main.c — ring-3 entry of the test guest: read the boot information, find
 * the TSC frequency, set up the allocator and the workloads, print "ready",
 * then loop for ever: run due workload steps, and once a second verify all
 * live data and print a tick; every balloon_poll_us it polls the virtio
 * balloon, if there is one (balloon.c). Also the report for CPU exceptions,
 * which the ring-0 stub forwards here (entry.S).
 *
 * Output contract (README.md): banner, "ready", then
 * "tick <n> live=<pages> free=<pages> verify=ok" at least once a second.
 * It cannot sleep: ring 3 has no hlt, so idle time is a pause loop.
 */
#include "guest.h"
#include "balloon.h"
#include "buddy.h"
#include "cmdline.h"
#include "mem.h"
#include "workload.h"

static char workload_spec[128];

static const char *const vector_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP",
	"#PF", "res", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "res", "res", "res", "res", "res", "res",
	"#HV", "#VC", "#SX", "res",
};

void guest_fault(u64 vector, u64 err, u64 rip, u64 cr2, u64 cs, u64 rsp) NORETURN;
void guest_main(u64 start_info, u64 tsc_entry, u64 tsc_ring3) NORETURN;
void selftest(void);

void guest_fault(u64 vector, u64 err, u64 rip, u64 cr2, u64 cs, u64 rsp)
{
	kprintf("exception vector=%lu (%s) rip=0x%lx cr2=0x%lx err=0x%lx cs=0x%lx rsp=0x%lx\n", vector,
		vector < 32 ? vector_names[vector] : "?", rip, cr2, err, cs, rsp);
	poweroff(EXIT_FAULT);
}

static void config(void)
{
	struct str v;
	if (cmdline_find(boot.cmdline, "workload", &v) != 0 || v.n == 0) {
		v.p = "idle";
		v.n = 4;
	}
	if (v.n >= sizeof(workload_spec))
		fatal("workload= is longer than %lu bytes", sizeof(workload_spec) - 1);
	memcpy(workload_spec, v.p, v.n);
	workloads_parse(v.p, v.n);
}

static void NORETURN run(u64 exit_after)
{
	u64 hz = tsc_hz(), start = rdtsc(), next = start, ticks = 0, last = start;
	u64 deadline = exit_after ? start + exit_after * hz : 0;
	for (;;) {
		u64 now = rdtsc();
		if (now < last) {
			/* The TSC went backwards (seen after QEMU migrations under
			 * nested KVM here): move the schedule with it, or ticks and
			 * balloon polls would stop for as long as the jump. */
			u64 back = last - now;
			kprintf("time: TSC went back %lu us\n", tsc_to_us(back));
			next -= back;
			if (deadline)
				deadline -= back;
			balloon_next_poll = now;
		}
		last = now;
		if (now >= next) {
			workloads_verify();
			kprintf("tick %lu live=%lu free=%lu verify=ok\n", ++ticks, workloads_live(), buddy_free_pages());
			next += hz;
			if (next <= now)
				next = now + hz;    /* fell behind: no burst of ticks */
			continue;
		}
		if (deadline && now >= deadline) {
			workloads_verify();
			workloads_report();
			kprintf("exit_after=%lu: verify=ok, powering off\n", exit_after);
			poweroff(EXIT_OK);
		}
		if (now >= balloon_next_poll)
			balloon_poll(now);
		if (!workloads_step(now))
			cpu_relax();
	}
}

void guest_main(u64 start_info, u64 tsc_entry, u64 tsc_ring3)
{
	serial_init();
	boot_parse(start_info);
	time_init();
	config();
	u64 exit_after = 0;
	if (cmdline_u64(boot.cmdline, "exit_after", &exit_after) == -2)
		fatal("exit_after= wants a number of seconds");

	kprintf("ferry-guest: mem=%lu MiB ram-regions=%u tsc=%lu kHz (%s) workload=%s\n", boot.ram_bytes >> 20,
		boot.nram, tsc_khz, tsc_source, workload_spec);
	kprintf("cmdline: %s\n", boot.cmdline);
	kprintf("boot: ring 0 took %lu us, identity map %lu GiB with %s pages\n", tsc_to_us(tsc_ring3 - tsc_entry),
		boot.map_limit / GIB, boot.map_pages);
	mem_init();
	if (cmdline_find(boot.cmdline, "selftest", &(struct str){0}) == 0)
		selftest();
	balloon_probe(boot.cmdline);
	workloads_setup();
	kprintf("setup: %lu ms since entry\n", tsc_to_ms(rdtsc() - tsc_entry));
	kprintf("ready\n");
	run(exit_after);
}
