/*
 * Calls target_fn N times. Prints target_fn's address, waits for a byte on stdin,
 * prints "done N" (the count target_fn kept) and exits 0.
 *
 * usage: calls N
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long counter;

__attribute__((noinline)) void target_fn(void)
{
	counter++;
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 100;
	char go;

	printf("%p\n", (void *)&target_fn);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	for (unsigned long i = 0; i < n; i++)
		target_fn();
	printf("done %lu\n", counter);
	return 0;
}
