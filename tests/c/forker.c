/*
 * Forks a child that writes the watched variable and exits 0; the parent then writes it
 * once (value 1) and prints "child STATUS" (128+signal if the child died of a signal).
 * Prints the variable's address first and waits for a byte on stdin.
 */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

volatile unsigned long watched;

int main(void)
{
	char go;
	int status;

	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	pid_t child = fork();
	if (child < 0)
		return 3;
	if (child == 0) {
		watched = 42;
		_exit(0);
	}
	if (waitpid(child, &status, 0) != child)
		return 4;
	watched = 1;
	printf("child %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}
