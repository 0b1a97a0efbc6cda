"""BPF without a compiler: a typed assembler, the bpf() system call, the hit program."""
