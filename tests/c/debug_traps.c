/*
 * SIGTRAPs with si_code TRAP_BRKPT, the way the kernel sends a #DB whose DR6 gives no
 * cause (x86): first one the program sends itself (rt_tgsigqueueinfo may set any
 * si_code for its own thread) at an address that does not follow an icebp, standing for
 * a #DB whose DR6 was lost; then a real icebp (0xF1), the program's own. Its SIGTRAP
 * handler prints "trap C" for each it receives. Writes `watched` between them (1, 2, 3).
 * Prints the address of `watched`, waits for a byte on stdin, prints "end", exits 0.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile unsigned long watched;

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		_exit(9);
}

static void on_trap(int sig, siginfo_t *info, void *ctx)
{
	char line[32];

	(void)sig;
	(void)ctx;
	snprintf(line, sizeof(line), "trap %d\n", info->si_code);
	say(line);
}

int main(void)
{
	struct sigaction sa;
	siginfo_t info;
	char go;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGTRAP, &sa, NULL))
		return 2;
	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	watched = 1;
	memset(&info, 0, sizeof(info));
	info.si_signo = SIGTRAP;
	info.si_code = TRAP_BRKPT;
	/* After the first byte of say(): a function's first byte is never an icebp. */
	info.si_addr = (char *)say + 1;
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)syscall(SYS_gettid), SIGTRAP, &info))
		return 3;
	say("sent\n");
	watched = 2;
	__asm__ volatile(".byte 0xf1"); /* icebp */
	watched = 3;
	say("end\n");
	return 0;
}
