/*
 * Runs a program with every signal unblocked. The broker blocks SIGCHLD in all its
 * threads and fork/exec pass the mask on; tests start their targets through this
 * instead of a preexec_fn (which can deadlock a multi-threaded parent's child).
 *
 * usage: unblock PROGRAM ARGS...
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	sigset_t none;

	if (argc < 2)
		return 2;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[1], argv + 1);
	perror(argv[1]);
	return 127;
}
