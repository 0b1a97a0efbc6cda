/*
 * Eight 8-byte variables written only on command, so a test decides when each write
 * happens. Prints the address of vars[0] (vars[i] is at +8*i), then "ready". Each stdin
 * line "INDEX VALUE" stores VALUE into vars[INDEX] and answers "ok"; end of input exits 0.
 *
 * usage: vars
 */
#include <stdio.h>

volatile unsigned long vars[8] __attribute__((aligned(64)));

int main(void)
{
	unsigned index;
	unsigned long value;

	printf("%p\nready\n", (void *)&vars[0]);
	fflush(stdout);
	while (scanf("%u %lu", &index, &value) == 2) {
		if (index < 8)
			vars[index] = value;
		printf("ok\n");
		fflush(stdout);
	}
	return 0;
}
