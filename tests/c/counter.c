/*
 * A counter bumped by a named function, for the debug adapter tests (issue 15).
 *
 * usage: counter        prints the address of `counter`, then "ready"; each stdin line
 *                       "bump" calls bump() and answers "ok VALUE"; end of input exits 0.
 *        counter N      calls bump() N times, printing nothing, and exits 0 (for a launch
 *                       whose program inherits the broker's standard streams).
 * `spare` is four more variables that are never written: slots for a rival to take.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile unsigned long counter __attribute__((aligned(64)));
volatile unsigned long spare[4] __attribute__((aligned(64)));

__attribute__((noinline)) void bump(void)
{
	counter = counter + 1;
}

int main(int argc, char **argv)
{
	char line[64];

	if (argc > 1) {
		for (long i = strtol(argv[1], NULL, 10); i > 0; i--)
			bump();
		return 0;
	}
	printf("%p\nready\n", (void *)&counter);
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "bump", 4) == 0)
			bump();
		printf("ok %lu\n", counter);
		fflush(stdout);
	}
	return 0;
}
