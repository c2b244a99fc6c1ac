/* The OpenMP team a kernel's parallel region runs in (torch's OpenMP runtime, see blur_pool.c),
   or a team of one where the kernel is built without OpenMP. */
#ifndef TIMM_PUSHPULL_THREADS_H
#define TIMM_PUSHPULL_THREADS_H
#ifdef _OPENMP
#include <omp.h>
#define TEAM_SIZE omp_get_num_threads()
#define THREAD_ID omp_get_thread_num()
#else
#define TEAM_SIZE 1
#define THREAD_ID 0
#endif
#endif
