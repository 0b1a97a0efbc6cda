/*
 * Starts T threads, each writing its number (1..T) to `watched` once. Prints the
 * variable's address, waits for a byte on stdin, runs, prints "done T".
 *
 * usage: threads T
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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
	pthread_t *ids = calloc(n, sizeof(*ids));
	char go;

	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	for (long i = 0; i < n; i++)
		if (pthread_create(&ids[i], NULL, worker, (void *)(i + 1)))
			return 3;
	for (int i = 0; i < n; i++)
		pthread_join(ids[i], NULL);
	printf("done %d\n", n);
	return 0;
}
