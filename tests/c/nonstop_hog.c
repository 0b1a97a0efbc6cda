/*
 * A thread that holds every debug register of its own: four perf breakpoint events
 * opened on itself (pid 0, any CPU) on hog[0..3]. Then "ready ADDR TID" where ADDR is
 * the address of target (a variable it does not watch) and TID the main thread's id;
 * exits at EOF on stdin. usage: nonstop_hog [count]   (default 4)
 */
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile unsigned long hog[4] __attribute__((aligned(64)));
volatile unsigned long target __attribute__((aligned(64)));

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 4;
	char buf[64];

	for (int i = 0; i < count; i++) {
		struct perf_event_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.type = PERF_TYPE_BREAKPOINT;
		attr.size = sizeof(attr);
		attr.bp_type = HW_BREAKPOINT_W;
		attr.bp_addr = (unsigned long)&hog[i];
		attr.bp_len = HW_BREAKPOINT_LEN_8;
		attr.exclude_kernel = 1;
		if (syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0) < 0) {
			perror("perf_event_open");
			return 2;
		}
	}
	printf("ready %p %ld\n", (void *)&target, (long)syscall(SYS_gettid));
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		target++;
	return 0;
}
