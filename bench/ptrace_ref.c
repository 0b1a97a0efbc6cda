/*
 * Reference: the smallest C tracer that reports every write to a variable, armed the way
 * the broker arms it (a perf breakpoint event bound to the thread with sigtrap set and a
 * cookie in sig_data; the trap is a SIGTRAP/TRAP_PERF signal-delivery-stop). Per trap it
 * does what the broker must do at least: waitpid, PTRACE_GETSIGINFO, process_vm_readv of
 * the value, PTRACE_CONT. The ratio of the broker's hits/s to this program's is the figure
 * issue 5 asks for.
 *
 * usage: ptrace_ref TARGET N     (TARGET is bench/target_loop)
 * prints one JSON object: hits, seconds, hits_per_s, wrong_values
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif
#define COOKIE 0xb7000000000001ULL

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	int in[2], out[2], status;
	unsigned long hits = 0, wrong = 0, value;
	char line[64];
	FILE *from;

	if (argc < 3) {
		fprintf(stderr, "usage: %s TARGET N\n", argv[0]);
		return 2;
	}
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
		execl(argv[1], argv[1], argv[2], (char *)NULL);
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
	int fd = syscall(SYS_perf_event_open, &attr, child, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		die("perf_event_open");

	double t0 = now();
	if (write(in[1], "g", 1) != 1)
		die("write");
	for (;;) {
		if (waitpid(child, &status, __WALL) < 0)
			die("waitpid");
		if (WIFEXITED(status) || WIFSIGNALED(status))
			break;
		int sig = WSTOPSIG(status), deliver = 0;
		if (sig == SIGTRAP && (status >> 16) == 0) {
			siginfo_t si;
			uint64_t perf_data;
			if (ptrace(PTRACE_GETSIGINFO, child, 0, &si))
				die("PTRACE_GETSIGINFO");
			/* si_perf_data: after si_addr in the sigfault union (glibc has no name for it). */
			memcpy(&perf_data, (char *)&si + 24, sizeof(perf_data));
			if (si.si_code == TRAP_PERF && perf_data == COOKIE) {
				struct iovec local = {&value, sizeof(value)};
				struct iovec remote = {(void *)addr, sizeof(value)};
				if (process_vm_readv(child, &local, 1, &remote, 1, 0) != sizeof(value))
					die("process_vm_readv");
				hits++;
				if (value != hits)
					wrong++;
			} else {
				deliver = sig;
			}
		} else if ((status >> 16) == 0) {
			deliver = sig;
		}
		if (ptrace(PTRACE_CONT, child, 0, deliver))
			die("PTRACE_CONT");
	}
	double seconds = now() - t0;
	close(fd);
	printf("{\"hits\": %lu, \"seconds\": %.6f, \"hits_per_s\": %.1f, \"wrong_values\": %lu, "
	       "\"exit_status\": %d}\n",
	       hits, seconds, hits / seconds, wrong, status);
	return 0;
}
