/*
 * Reference tracer for the benchmarks that bench/ptrace_ref.c does not cover: the same
 * minimal ptrace loop (waitpid, PTRACE_GETSIGINFO, process_vm_readv of the value,
 * PTRACE_CONT), with either arming the broker offers:
 *
 *   perf      a perf breakpoint event bound to the thread with sigtrap and a cookie in
 *             sig_data; the trap is SIGTRAP/TRAP_PERF (as bench/ptrace_ref.c);
 *   debugreg  DR0 and DR7 written with PTRACE_POKEUSER; the trap is SIGTRAP/TRAP_HWBKPT
 *             and DR6 (PTRACE_PEEKUSER) says which slot fired.
 *
 * and one of two measurements:
 *
 *   count     the target is bench/target_loop (writes 1, 2, ..., N); counts traps and
 *             checks each value; the time runs from the first trap to the last;
 *   latency   the target is bench/clock_target (writes its CLOCK_MONOTONIC time); for
 *             each trap, now - value in ns: the C floor of the access-to-report latency.
 *
 * usage: ref_tracer perf|debugreg count|latency TARGET ARGS...
 * prints one JSON object; in latency mode "latency_ns" lists every sample and "target"
 * holds the target's own final JSON line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif
#ifndef TRAP_HWBKPT
#define TRAP_HWBKPT 4
#endif
#define COOKIE 0xb7000000000002ULL
/* DR7: L0 enabled, RW0 = 01 (write), LEN0 = 10 (8 bytes). */
#define DR7_WRITE8_SLOT0 (1UL | (1UL << 16) | (2UL << 18))

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void arm_perf(pid_t child, uintptr_t addr)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_BREAKPOINT;
	attr.size = sizeof(attr);
	attr.bp_type = HW_BREAKPOINT_W;
	attr.bp_addr = addr;
	attr.bp_len = HW_BREAKPOINT_LEN_8;
	attr.sample_period = 1;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	attr.sigtrap = 1;
	attr.remove_on_exec = 1;
	attr.sig_data = COOKIE;
	/* The descriptor stays open until this process exits: the slot lives as long. */
	if (syscall(SYS_perf_event_open, &attr, child, -1, -1, PERF_FLAG_FD_CLOEXEC) < 0)
		die("perf_event_open");
}

static void arm_debugreg(pid_t child, uintptr_t addr)
{
	/* POKEUSER needs a ptrace-stop: interrupt, arm, and let the caller continue. */
	int status;

	if (ptrace(PTRACE_INTERRUPT, child, 0, 0))
		die("PTRACE_INTERRUPT");
	if (waitpid(child, &status, __WALL) < 0)
		die("waitpid");
	if (ptrace(PTRACE_POKEUSER, child, offsetof(struct user, u_debugreg[0]), addr))
		die("POKEUSER DR0");
	if (ptrace(PTRACE_POKEUSER, child, offsetof(struct user, u_debugreg[7]), DR7_WRITE8_SLOT0))
		die("POKEUSER DR7");
	if (ptrace(PTRACE_CONT, child, 0, 0))
		die("PTRACE_CONT");
}

/* Is this SIGTRAP stop our watch? (Anything else is delivered to the target.) */
static int is_our_trap(pid_t child, int debugreg)
{
	siginfo_t si;
	uint64_t perf_data;

	if (ptrace(PTRACE_GETSIGINFO, child, 0, &si))
		die("PTRACE_GETSIGINFO");
	if (debugreg) {
		if (si.si_code != TRAP_HWBKPT)
			return 0;
		errno = 0;
		long dr6 = ptrace(PTRACE_PEEKUSER, child, offsetof(struct user, u_debugreg[6]), 0);
		if (errno)
			die("PEEKUSER DR6");
		return (dr6 & 1) != 0;
	}
	/* si_perf_data: after si_addr in the sigfault union (glibc has no name for it). */
	memcpy(&perf_data, (char *)&si + 24, sizeof(perf_data));
	return si.si_code == TRAP_PERF && perf_data == COOKIE;
}

int main(int argc, char **argv)
{
	int in[2], out[2], status;
	unsigned long hits = 0, wrong = 0, cap = 1024;
	uint64_t value, first = 0, last = 0;
	uint64_t *lat;
	char line[64];
	static char tail[1 << 20];
	FILE *from;

	if (argc < 4 || (strcmp(argv[1], "perf") && strcmp(argv[1], "debugreg")) ||
	    (strcmp(argv[2], "count") && strcmp(argv[2], "latency"))) {
		fprintf(stderr, "usage: %s perf|debugreg count|latency TARGET ARGS...\n", argv[0]);
		return 2;
	}
	int debugreg = !strcmp(argv[1], "debugreg");
	int latency = !strcmp(argv[2], "latency");
	lat = malloc(cap * sizeof(*lat));
	if (!lat)
		die("malloc");
	if (pipe(in) || pipe(out))
		die("pipe");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execv(argv[3], argv + 3);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	from = fdopen(out[0], "r");
	if (!fgets(line, sizeof(line), from))
		die("reading the target's address");
	uintptr_t addr = strtoul(line, NULL, 16);

	if (ptrace(PTRACE_SEIZE, child, 0, PTRACE_O_TRACEEXIT))
		die("PTRACE_SEIZE");
	if (debugreg)
		arm_debugreg(child, addr);
	else
		arm_perf(child, addr);

	if (write(in[1], "g", 1) != 1)
		die("write");
	for (;;) {
		if (waitpid(child, &status, __WALL) < 0)
			die("waitpid");
		if (WIFEXITED(status) || WIFSIGNALED(status))
			break;
		int sig = WSTOPSIG(status), deliver = 0;
		if (sig == SIGTRAP && (status >> 16) == 0 && is_our_trap(child, debugreg)) {
			struct iovec local = {&value, sizeof(value)};
			struct iovec remote = {(void *)addr, sizeof(value)};
			if (process_vm_readv(child, &local, 1, &remote, 1, 0) != sizeof(value))
				die("process_vm_readv");
			uint64_t t = now_ns();
			if (!first)
				first = t;
			last = t;
			hits++;
			if (latency) {
				if (hits > cap) {
					cap *= 2;
					lat = realloc(lat, cap * sizeof(*lat));
					if (!lat)
						die("realloc");
				}
				lat[hits - 1] = t - value;
			} else if (value != hits) {
				wrong++;
			}
		} else if ((status >> 16) == 0) {
			deliver = sig;
		}
		if (ptrace(PTRACE_CONT, child, 0, deliver))
			die("PTRACE_CONT");
	}
	size_t got = fread(tail, 1, sizeof(tail) - 1, from);
	tail[got] = 0;
	while (got && (tail[got - 1] == '\n' || tail[got - 1] == ' '))
		tail[--got] = 0;
	double seconds = (last - first) / 1e9;
	printf("{\"arming\": \"%s\", \"hits\": %lu, \"seconds\": %.6f, \"hits_per_s\": %.1f, "
	       "\"wrong_values\": %lu, \"exit_status\": %d",
	       argv[1], hits, seconds, hits > 1 ? (hits - 1) / seconds : 0.0, wrong, status);
	if (latency) {
		printf(", \"latency_ns\": [");
		for (unsigned long i = 0; i < hits; i++)
			printf("%s%llu", i ? "," : "", (unsigned long long)lat[i]);
		printf("], \"target\": %s", got && tail[0] == '{' ? tail : "null");
	}
	printf("}\n");
	return 0;
}
