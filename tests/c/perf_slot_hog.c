/* Holds debug-register slots through its own perf breakpoint events, outside any broker.
 *
 * usage: perf_slot_hog cpu|task [SLOTS [CPU]]
 *   cpu:  SLOTS (default 4) CPU-bound events (pid -1) on every online CPU, or on CPU only;
 *   task: SLOTS events bound to this process (pid 0, any CPU), as a debugger's are.
 * The kernel counts a CPU's breakpoint slots as its CPU-bound events plus the
 * busiest task's, so either mode leaves no slot for a CPU-wide kernel watch and
 * perf_event_open answers ENOSPC. Prints "ready N" (events held), then holds
 * them until stdin reaches EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile uint64_t watched[8] __attribute__((aligned(64)));

static int open_bp(int slot, pid_t pid, int cpu)
{
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_BREAKPOINT;
	attr.size = sizeof(attr);
	attr.bp_type = HW_BREAKPOINT_W;
	attr.bp_addr = (uintptr_t)&watched[slot];
	attr.bp_len = HW_BREAKPOINT_LEN_8;
	attr.sample_period = 1;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	attr.pinned = 1;
	return (int)syscall(SYS_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "cpu") && strcmp(argv[1], "task"))) {
		fprintf(stderr, "usage: %s cpu|task [SLOTS]\n", argv[0]);
		return 2;
	}
	int slots = argc > 2 ? atoi(argv[2]) : 4;
	int held = 0;
	if (!strcmp(argv[1], "task")) {
		for (int s = 0; s < slots; s++) {
			if (open_bp(s, 0, -1) < 0) {
				fprintf(stderr, "slot %d: %s\n", s, strerror(errno));
				return 1;
			}
			held++;
		}
	} else {
		long ncpu = sysconf(_SC_NPROCESSORS_CONF);
		int only = argc > 3 ? atoi(argv[3]) : -1;
		for (int cpu = 0; cpu < ncpu; cpu++) {
			if (only >= 0 && cpu != only)
				continue;
			for (int s = 0; s < slots; s++) {
				if (open_bp(s, -1, cpu) < 0) {
					if (errno == ENODEV)
						break; /* offline CPU */
					fprintf(stderr, "cpu %d slot %d: %s\n", cpu, s, strerror(errno));
					return 1;
				}
				held++;
			}
		}
	}
	printf("ready %d\n", held);
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
