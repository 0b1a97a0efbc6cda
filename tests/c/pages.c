/*
 * Two pages of known bytes followed by an unmapped page, for reading another process's
 * memory: byte i of the area is (i * 7) & 0xff, except the 8 bytes at offset 64, which
 * are all 0xff. Prints the area's address in hex, then waits (killed by the test).
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *area = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (area == MAP_FAILED)
		return 1;
	for (long i = 0; i < 2 * page; i++)
		area[i] = (unsigned char)(i * 7);
	memset(area + 64, 0xff, 8);
	munmap(area + 2 * page, page);
	printf("%p\n", (void *)area);
	fflush(stdout);
	for (;;)
		pause();
}
