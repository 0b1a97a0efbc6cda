/* Makes the kernel read a known kernel address COUNT times, from one CPU.
 *
 * usage: perf_kernel_touch CPU COUNT PATH
 * Each pread(PATH, 8 bytes, offset 0) of /sys/kernel/btf/vmlinux copies the
 * first bytes of the kernel's BTF blob (__start_BTF), so a kernel watch on that
 * address sees kernel-mode reads on CPU. Prints the number of reads done.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s CPU COUNT PATH\n", argv[0]);
		return 2;
	}
	int cpu = atoi(argv[1]);
	long count = atol(argv[2]);
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("sched_setaffinity");
		return 1;
	}
	int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	char buf[8];
	long done = 0;
	for (long i = 0; i < count; i++) {
		if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
			perror("pread");
			return 1;
		}
		done++;
	}
	printf("%ld\n", done);
	return 0;
}
