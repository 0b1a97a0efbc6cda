/*
 * WRITERS threads each write their own watched variable (watched[i] = 1..N) while IDLE
 * other threads sleep: many traced threads, few of them trapping. All threads exist
 * before the address is printed (an attach seizes them all); they start on the go byte.
 *
 * usage: busy WRITERS IDLE N     (WRITERS <= 4)
 * prints the address of watched[0] (watched[i] is at +8*i), waits for a byte on stdin,
 * runs, prints "done N".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long watched[4] __attribute__((aligned(64)));
static unsigned long n;
static int start[2], finish[2];

static void wait_byte(int fd)
{
	char c;

	if (read(fd, &c, 1) < 0)
		exit(2);
}

static void *writer(void *arg)
{
	long i = (long)arg;

	wait_byte(start[0]);
	for (unsigned long k = 1; k <= n; k++)
		watched[i] = k;
	return NULL;
}

static void *idle(void *arg)
{
	(void)arg;
	wait_byte(finish[0]); /* EOF when main closes the write end */
	return NULL;
}

int main(int argc, char **argv)
{
	int writers = argc > 1 ? atoi(argv[1]) : 2;
	int idlers = argc > 2 ? atoi(argv[2]) : 6;
	pthread_t ids[4 + 64];

	n = argc > 3 ? strtoul(argv[3], NULL, 0) : 1000;
	if (writers > 4 || idlers > 64 || pipe(start) || pipe(finish))
		return 3;
	for (long i = 0; i < writers; i++)
		pthread_create(&ids[i], NULL, writer, (void *)i);
	for (int i = 0; i < idlers; i++)
		pthread_create(&ids[writers + i], NULL, idle, NULL);
	printf("%p\n", (void *)&watched[0]);
	fflush(stdout);
	wait_byte(0);
	for (int i = 0; i < writers; i++)
		if (write(start[1], "gggg", 1) != 1)
			return 4;
	for (int i = 0; i < writers; i++)
		pthread_join(ids[i], NULL);
	close(finish[1]);
	for (int i = 0; i < idlers; i++)
		pthread_join(ids[writers + i], NULL);
	printf("done %lu\n", n);
	return 0;
}
