/*
 * A platform check, without the broker: for each of TARGETS forked targets it opens
 * what the non-stop mechanism opens for a process. Per CPU that is a tracker (task and
 * comm records) and a disabled write breakpoint on a global, both with inherit and
 * inherit_thread, both sent into that CPU's ring, then the breakpoint is enabled. The
 * target's THREADS threads then write the global WRITES times each. Nothing is moved or
 * closed while they write. A perf breakpoint must never kill its target; on our PVM guest
 * one in thousands did (docs/decisions.md, "A watched target killed by SIGTRAP").
 *
 * usage: perf_inherit_storm TARGETS THREADS WRITES
 * Prints "target K: signal S" (or "exit C") for each target that did not exit 0 (the
 * target's own trap_report.h line goes to stderr), then "targets N deaths D"; exits 0.
 * Exits 2 when perf refuses an event.
 */
#include "trap_report.h"
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_CPUS 64
#define MAX_THREADS 64
#define RING_PAGES 64
#define SAMPLES (PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_IP | PERF_SAMPLE_TID | \
		 PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR | PERF_SAMPLE_CPU)

volatile unsigned long watched __attribute__((aligned(64)));
static long writes;

static void *writer(void *arg)
{
	(void)arg;
	for (long i = 1; i <= writes; i++)
		watched = (unsigned long)i;
	return NULL;
}

static void common(struct perf_event_attr *a)
{
	a->size = sizeof(*a);
	a->sample_type = SAMPLES;
	a->use_clockid = 1;
	a->clockid = CLOCK_MONOTONIC;
	a->sample_id_all = 1;
}

static int open_event(struct perf_event_attr *a, pid_t pid, int cpu)
{
	int fd = (int)syscall(SYS_perf_event_open, a, pid, cpu, -1, 0);

	if (fd < 0) {
		perror("perf_event_open");
		exit(2);
	}
	return fd;
}

/* A CPU's ring: a dummy event waking its reader on every record, mapped. */
static int open_ring(int cpu, struct perf_event_mmap_page **page)
{
	struct perf_event_attr a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_DUMMY;
	common(&a);
	a.watermark = 1;
	a.wakeup_watermark = 1;
	fd = (int)syscall(SYS_perf_event_open, &a, -1, cpu, -1, 0);
	if (fd < 0)
		return -1; /* an offline CPU */
	*page = mmap(NULL, (RING_PAGES + 1) * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (*page == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return fd;
}

static int open_tracker(pid_t pid, int cpu)
{
	struct perf_event_attr a;

	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_DUMMY;
	common(&a);
	a.inherit = 1;
	a.inherit_thread = 1;
	a.task = 1;
	a.comm = 1;
	a.comm_exec = 1;
	a.exclude_kernel = 1;
	return open_event(&a, pid, cpu);
}

static int open_breakpoint(pid_t pid, int cpu)
{
	struct perf_event_attr a;

	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_BREAKPOINT;
	a.bp_addr = (unsigned long)&watched;
	a.bp_len = sizeof(watched);
	a.bp_type = HW_BREAKPOINT_W;
	a.sample_period = 1;
	common(&a);
	a.disabled = 1;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	a.inherit = 1;
	a.inherit_thread = 1;
	a.remove_on_exec = 1;
	a.read_format = 1 << 4; /* PERF_FORMAT_LOST */
	return open_event(&a, pid, cpu);
}

/* The target: waits for the go byte, runs its writers, exits 0. */
static void target(int go, int threads)
{
	pthread_t th[MAX_THREADS];
	char byte;

	if (read(go, &byte, 1) != 1)
		_exit(3);
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, writer, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	_exit(0);
}

int main(int argc, char **argv)
{
	struct perf_event_mmap_page *pages[MAX_CPUS];
	int rings[MAX_CPUS], events[2 * MAX_CPUS];
	int ncpus, targets, threads, deaths = 0;
	struct timespec nap = { 0, 2000000 };

	if (argc != 4) {
		fprintf(stderr, "usage: %s TARGETS THREADS WRITES\n", argv[0]);
		return 2;
	}
	targets = atoi(argv[1]);
	threads = atoi(argv[2]);
	writes = atol(argv[3]);
	if (threads < 1 || threads > MAX_THREADS)
		return 2;
	ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	if (ncpus > MAX_CPUS)
		ncpus = MAX_CPUS;
	for (int c = 0; c < ncpus; c++)
		rings[c] = open_ring(c, &pages[c]);

	for (int k = 0; k < targets; k++) {
		int go[2], status, nevents = 0;
		pid_t pid;

		if (pipe(go) != 0)
			return 2;
		pid = fork();
		if (pid == 0) {
			close(go[1]);
			target(go[0], threads);
		}
		close(go[0]);
		for (int c = 0; c < ncpus; c++) {
			int tracker, bp;

			if (rings[c] < 0)
				continue;
			tracker = open_tracker(pid, c);
			bp = open_breakpoint(pid, c);
			if (ioctl(tracker, PERF_EVENT_IOC_SET_OUTPUT, rings[c]) != 0 ||
			    ioctl(bp, PERF_EVENT_IOC_SET_OUTPUT, rings[c]) != 0 ||
			    ioctl(bp, PERF_EVENT_IOC_ENABLE, 0) != 0) {
				perror("ioctl");
				return 2;
			}
			events[nevents++] = tracker;
			events[nevents++] = bp;
		}
		if (write(go[1], "g", 1) != 1)
			return 2;
		close(go[1]);
		/* Keep the rings drained, as the broker's reader does, until the target ends. */
		while (waitpid(pid, &status, WNOHANG) != pid) {
			for (int c = 0; c < ncpus; c++) {
				if (rings[c] >= 0)
					__atomic_store_n(&pages[c]->data_tail,
							 __atomic_load_n(&pages[c]->data_head, __ATOMIC_ACQUIRE),
							 __ATOMIC_RELEASE);
			}
			nanosleep(&nap, NULL);
		}
		for (int i = 0; i < nevents; i++)
			close(events[i]);
		if (WIFSIGNALED(status)) {
			deaths++;
			printf("target %d: signal %d\n", k, WTERMSIG(status));
		} else if (WEXITSTATUS(status) != 0) {
			deaths++;
			printf("target %d: exit %d\n", k, WEXITSTATUS(status));
		}
		fflush(stdout);
	}
	printf("targets %d deaths %d\n", targets, deaths);
	return 0;
}
