/*
 * The benchmark target: writes an 8-byte variable N times (the value written is i).
 *
 * Prints the variable's address in hex on the first line, then waits for one byte on
 * stdin (EOF also starts it) so a tracer can arm a watch first; prints "done N" at the end.
 *
 * usage: target_loop N
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long watched;

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 100000;
	char go;

	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	for (unsigned long i = 1; i <= n; i++)
		watched = i;
	printf("done %lu\n", watched);
	return 0;
}
