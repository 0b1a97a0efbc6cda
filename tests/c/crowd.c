/*
 * A process with many threads, for the attach progress reports (issue 14): starts T
 * threads (small stacks) that all block on a pipe, prints the address of `watched`
 * and then "ready T" once every one runs. A byte on stdin (or its end) lets the
 * threads end; the program prints "done" and exits 0.
 *
 * usage: crowd T
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long watched;

static int gate[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t all_up = PTHREAD_COND_INITIALIZER;
static int running;

static void *worker(void *arg)
{
	char go;

	(void)arg;
	pthread_mutex_lock(&lock);
	running++;
	pthread_cond_signal(&all_up);
	pthread_mutex_unlock(&lock);
	/* Blocks until main closes the write end: every thread then reads 0 and ends. */
	if (read(gate[0], &go, 1) < 0)
		return NULL;
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	pthread_t *ids = calloc(n, sizeof(*ids));
	pthread_attr_t attr;
	char go;

	if (ids == NULL || pipe(gate) != 0)
		return 2;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	printf("%p\n", (void *)&watched);
	fflush(stdout);
	for (int i = 0; i < n; i++)
		if (pthread_create(&ids[i], &attr, worker, NULL))
			return 3;
	pthread_mutex_lock(&lock);
	while (running < n)
		pthread_cond_wait(&all_up, &lock);
	pthread_mutex_unlock(&lock);
	printf("ready %d\n", n);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	close(gate[1]);
	for (int i = 0; i < n; i++)
		pthread_join(ids[i], NULL);
	printf("done\n");
	return 0;
}
