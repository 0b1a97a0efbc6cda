/*
 * Starts T threads, each writing its number (1..T) to `watched` once. Prints the
 * variable's address, waits for a byte on stdin, runs, prints "done T".
 *
 * With "step", the threads run one at a time: each is started by a byte on stdin and
 * joined before the next, "ended I" is printed after thread I ended, and the program
 * ends at the end of stdin.
 *
 * usage: threads T [step]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long watched;

static void *worker(void *arg)
{
	watched = (unsigned long)arg;
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200;
	int step = argc > 2 && !strcmp(argv[2], "step");
	pthread_t *ids = calloc(n, sizeof(*ids));
	char go;

	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	for (long i = 0; i < n; i++) {
		if (step && i > 0 && read(0, &go, 1) != 1)
			return 2;
		if (pthread_create(&ids[i], NULL, worker, (void *)(i + 1)))
			return 3;
		if (step) {
			pthread_join(ids[i], NULL);
			printf("ended %ld\n", i + 1);
			fflush(stdout);
		}
	}
	for (int i = 0; !step && i < n; i++)
		pthread_join(ids[i], NULL);
	while (step && read(0, &go, 1) == 1)
		;
	printf("done %d\n", n);
	return 0;
}
