/*
 * An idle target for the footprint benchmark: prints its pid, then sleeps a second at a
 * time until killed.
 *
 * usage: sleeper
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("%d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		sleep(1);
}
