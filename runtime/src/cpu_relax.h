/*===- cpu_relax.h - A spin-wait hint for C and C++ ----------*- C -*-===*
 *
 * Shared by the thread pool (waiting for a job or its end) and the expert
 * kernel (a decode task waiting for its expert's first phase).
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_SRC_CPU_RELAX_H
#define MOERT_SRC_CPU_RELAX_H

/* Tells the core that the caller spins on a memory location. */
static inline void moert_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

#endif /* MOERT_SRC_CPU_RELAX_H */
