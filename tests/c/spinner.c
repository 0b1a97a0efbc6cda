/*
 * Writes the four 8-byte words of a 32-byte region in turn, in a tight loop, until killed:
 * hits as fast as the broker can take them, on every chunk of a region split across slots.
 * Prints the region's address, then "ready".
 *
 * usage: spinner
 */
#include <stdio.h>

volatile unsigned long region[4] __attribute__((aligned(32)));

int main(void)
{
	printf("%p\nready\n", (void *)region);
	fflush(stdout);
	for (unsigned long n = 1;; n++)
		for (int i = 0; i < 4; i++)
			region[i] = n;
}
