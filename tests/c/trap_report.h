/*
 * Included by test targets that run under breakpoints: a SIGTRAP that kills the target
 * first says where it came from on stderr, then kills it as before (status -5).
 *
 * Why: under perf breakpoints without ptrace, a target must never see SIGTRAP, yet
 * one in thousands of runs on our PVM guest did. The kernel's si_code tells the cases
 * apart (arch/x86/kernel/traps.c, get_si_code): TRAP_BRKPT (1) is a #DB whose DR6 said
 * nothing (taken for an icebp), TRAP_HWBKPT (4) a breakpoint nobody claimed, TRAP_TRACE
 * (2) a single step, SI_USER (0) a kill() from si_pid.
 */
#ifndef TRAP_REPORT_H
#define TRAP_REPORT_H

#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void trap_report(int sig, siginfo_t *si, void *ctx)
{
	char line[160];
	int n;

	(void)ctx;
	n = snprintf(line, sizeof(line), "SIGTRAP tid %ld si_code %d si_addr %p si_pid %d\n",
		     (long)syscall(SYS_gettid), si->si_code, si->si_addr, (int)si->si_pid);
	if (n > 0)
		(void)!write(2, line, (size_t)n);
	raise(sig); /* SA_RESETHAND: the default action now, as if never caught */
}

__attribute__((constructor)) static void trap_report_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = trap_report;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigaction(SIGTRAP, &sa, NULL);
}

#endif
