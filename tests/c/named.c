/*
 * Named things for issue 13 (watch by name, hits in words). Built with and without PIE
 * (named, named-pie) and stripped (named-stripped); see tests/c_programs.py.
 * hwbkpt-build: pie stripped
 *
 * usage: named [count N]
 *   count N: write counter = 1..N (bump_counter), 1 ms apart, then exit 0.
 *   otherwise: print the address of counter and "ready", then answer "ok" to each stdin line:
 *     c N       counter = N            m N   cfg.mode = N      f N   cfg.flags = N
 *     l N       cfg.limit = N          t N   cfg.tag[0] = N    a I N table[I] = N
 *     w         call worker()          x     exec this program again (prints both again)
 *     d PATH    dlopen PATH and call its lib_bump(N) with N = 1, 2, 3
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct config {
	int mode;
	int flags;
	long limit;
	char tag[8];
}; /* 24 bytes */

volatile long counter;
volatile struct config cfg __attribute__((aligned(32)));
volatile long table[8];
/* Also defined in libnamed_lib.so: ambiguous once that is loaded. */
volatile long shared_tag;

__attribute__((noinline)) void bump_counter(long value)
{
	counter = value;
}

__attribute__((noinline)) int worker(int n)
{
	shared_tag += n;
	return (int)shared_tag;
}

static void count(long n)
{
	struct timespec ms = {0, 1000000};

	for (long i = 1; i <= n; i++) {
		bump_counter(i);
		nanosleep(&ms, NULL);
	}
}

int main(int argc, char **argv)
{
	char cmd[512], path[480];
	long a, b;

	if (argc == 3 && strcmp(argv[1], "count") == 0) {
		count(atol(argv[2]));
		return 0;
	}
	printf("%p\nready\n", (void *)&counter);
	fflush(stdout);
	while (fgets(cmd, sizeof(cmd), stdin)) {
		if (sscanf(cmd, "c %ld", &a) == 1)
			bump_counter(a);
		else if (sscanf(cmd, "m %ld", &a) == 1)
			cfg.mode = (int)a;
		else if (sscanf(cmd, "f %ld", &a) == 1)
			cfg.flags = (int)a;
		else if (sscanf(cmd, "l %ld", &a) == 1)
			cfg.limit = a;
		else if (sscanf(cmd, "t %ld", &a) == 1)
			cfg.tag[0] = (char)a;
		else if (sscanf(cmd, "a %ld %ld", &a, &b) == 2 && a >= 0 && a < 8)
			table[a] = b;
		else if (cmd[0] == 'w')
			worker(1);
		else if (cmd[0] == 'x') {
			execv("/proc/self/exe", argv);
			perror("execv");
			return 1;
		} else if (sscanf(cmd, "d %479s", path) == 1) {
			void *lib = dlopen(path, RTLD_NOW);
			void (*bump)(long) = lib ? (void (*)(long))dlsym(lib, "lib_bump") : NULL;

			if (!bump) {
				fprintf(stderr, "dlopen: %s\n", dlerror());
				return 1;
			}
			printf("loaded\n");
			fflush(stdout);
			/* Give the broker time to place a pending watch before the writes. */
			if (fgets(cmd, sizeof(cmd), stdin) == NULL)
				return 1;
			for (long i = 1; i <= 3; i++)
				bump(i);
		}
		printf("ok\n");
		fflush(stdout);
	}
	return 0;
}
