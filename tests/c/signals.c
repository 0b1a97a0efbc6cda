/*
 * Signal behaviour that must not change under the broker: a SIGUSR1 handler, a
 * SIGSTOP/SIGCONT cycle (the test sends SIGCONT once it sees the process stopped), and
 * the program's own int3 caught by its SIGTRAP handler. Writes the watched variable in
 * between. Prints the variable's address, waits for a byte on stdin, exits with 7.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long watched;

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		_exit(9);
}

static void on_usr1(int sig) { (void)sig; say("usr1\n"); }
static void on_cont(int sig) { (void)sig; say("cont\n"); }
static void on_trap(int sig) { (void)sig; say("trap\n"); }

int main(void)
{
	char go;

	signal(SIGUSR1, on_usr1);
	signal(SIGCONT, on_cont);
	signal(SIGTRAP, on_trap);
	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	watched = 1;
	kill(getpid(), SIGUSR1);
	watched = 2;
	say("stopping\n");
	raise(SIGSTOP);
	watched = 3;
	__asm__ volatile("int3");
	watched = 4;
	say("end\n");
	return 7;
}
