/*
 * A target for the non-stop mechanism, driven by commands on stdin (one per line);
 * it answers each with one line on stdout. vars[0] is the watched variable,
 * vars[1..7] spare ones (8 bytes apart). Prints "vars ADDR" first.
 *
 *   spawn K      start K worker threads (they wait for "go"); answers "spawned K"
 *   go N D       every worker writes vars[0] N times (value 1..N), D us apart; "went"
 *   write N      the main thread writes vars[0] N times (value 1..N); "wrote N"
 *   spare I N    the main thread writes vars[I] N times; "wrote N"
 *   stop         workers end and are joined; "stopped"
 *   exec         exec /bin/sleep 0.3 (no answer)
 *   exit C       exit with status C (no answer)
 *   handoff      a new thread takes over reading commands, the main thread exits; "handed"
 */
#include "trap_report.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long vars[8] __attribute__((aligned(64)));

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static unsigned long round_no, per, delay_us, done;
static int stopping, nworkers;
static pthread_t workers[256];

static void *worker(void *arg)
{
	unsigned long mine = 0;

	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (round_no == mine && !stopping)
			pthread_cond_wait(&wake, &lock);
		if (stopping)
			break;
		mine = round_no;
		pthread_mutex_unlock(&lock);
		for (unsigned long i = 1; i <= per; i++) {
			vars[0] = i;
			if (delay_us)
				usleep(delay_us);
		}
		pthread_mutex_lock(&lock);
		done++;
		pthread_cond_broadcast(&done_cond);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void *commands(void *handed)
{
	char line[128];

	if (handed)
		printf("handed\n");
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long a = 0, b = 0;
		char cmd[16];

		if (sscanf(line, "%15s %lu %lu", cmd, &a, &b) < 1)
			continue;
		if (!strcmp(cmd, "spawn")) {
			for (unsigned long i = 0; i < a && nworkers < 256; i++)
				if (pthread_create(&workers[nworkers++], NULL, worker, NULL))
					exit(3);
			printf("spawned %lu\n", a);
		} else if (!strcmp(cmd, "go")) {
			pthread_mutex_lock(&lock);
			per = a;
			delay_us = b;
			done = 0;
			round_no++;
			pthread_cond_broadcast(&wake);
			while (done < (unsigned long)nworkers)
				pthread_cond_wait(&done_cond, &lock);
			pthread_mutex_unlock(&lock);
			printf("went\n");
		} else if (!strcmp(cmd, "write") || !strcmp(cmd, "spare")) {
			int v = !strcmp(cmd, "spare") ? (int)(a & 7) : 0;
			unsigned long n = v ? b : a;

			for (unsigned long i = 1; i <= n; i++)
				vars[v] = i;
			printf("wrote %lu\n", n);
		} else if (!strcmp(cmd, "stop")) {
			pthread_mutex_lock(&lock);
			stopping = 1;
			pthread_cond_broadcast(&wake);
			pthread_mutex_unlock(&lock);
			for (int i = 0; i < nworkers; i++)
				pthread_join(workers[i], NULL);
			nworkers = 0;
			stopping = 0;
			printf("stopped\n");
		} else if (!strcmp(cmd, "exec")) {
			execl("/bin/sleep", "sleep", "0.3", (char *)NULL);
			exit(4);
		} else if (!strcmp(cmd, "exit")) {
			exit((int)a);
		} else if (!strcmp(cmd, "handoff")) {
			pthread_t next;

			if (pthread_create(&next, NULL, commands, (void *)1))
				exit(3);
			pthread_exit(NULL);
		}
	}
	exit(0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("vars %p\n", (void *)vars);
	commands(NULL);
	return 0;
}
