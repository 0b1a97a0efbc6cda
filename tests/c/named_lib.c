/*
 * A shared library named.c loads with dlopen (issue 13 item 5), built as libnamed_lib.so.
 * hwbkpt-build: shared
 */
volatile long lib_counter;
volatile long shared_tag;

void lib_bump(long value)
{
	lib_counter = value;
	shared_tag = value;
}
