/*
 * K threads each write their own tagged sequence into one shared variable:
 * thread t (1..K) writes (t << 32) | i for i = 1..N. Prints the variable's
 * address, waits for one byte on stdin (so the test can arm first), starts the
 * threads, joins them, prints "done", then waits for one more byte (or EOF) before
 * it exits (its watcher may still be attributing the hits of its ended threads).
 *
 * usage: tagged K N
 */
#include "trap_report.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long shared __attribute__((aligned(64)));
static unsigned long per;

static void *writer(void *arg)
{
	unsigned long tag = (unsigned long)arg << 32;

	for (unsigned long i = 1; i <= per; i++)
		shared = tag | i;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[64];
	unsigned long k;
	char go;

	if (argc != 3)
		return 2;
	k = strtoul(argv[1], NULL, 0);
	per = strtoul(argv[2], NULL, 0);
	if (k < 1 || k > 64)
		return 2;
	printf("%p\n", (void *)&shared);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	for (unsigned long t = 0; t < k; t++)
		pthread_create(&threads[t], NULL, writer, (void *)(t + 1));
	for (unsigned long t = 0; t < k; t++)
		pthread_join(threads[t], NULL);
	printf("done\n");
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	return 0;
}
