/*
 * The demo's native target: four global 8-byte variables, written only on command.
 *
 * Prints "NAME ADDRESS" for each variable, then "ready". Each line on stdin,
 * "INDEX VALUE SIZE" (SIZE 4 or 8), stores VALUE into the variable with one store
 * of that size and answers "ok"; end of input ends the program. Writing on command
 * keeps the story deterministic: a write happens exactly when the story says so.
 */
#include <stdint.h>
#include <stdio.h>

volatile uint64_t counter __attribute__((aligned(8)));
volatile uint64_t flags __attribute__((aligned(8)));
volatile uint64_t head __attribute__((aligned(8)));
volatile uint64_t total __attribute__((aligned(8)));

static volatile uint64_t *const vars[] = {&counter, &flags, &head, &total};
static const char *const names[] = {"counter", "flags", "head", "total"};

int main(void)
{
	unsigned index, size;
	unsigned long long value;

	for (unsigned i = 0; i < 4; i++)
		printf("%s %p\n", names[i], (void *)vars[i]);
	printf("ready\n");
	fflush(stdout);
	while (scanf("%u %llu %u", &index, &value, &size) == 3) {
		if (index >= 4)
			continue;
		if (size == 4)
			*(volatile uint32_t *)vars[index] = (uint32_t)value;
		else
			*vars[index] = value;
		printf("ok\n");
		fflush(stdout);
	}
	return 0;
}
