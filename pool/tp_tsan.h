/* tp_tsan.h - tells ThreadSanitizer about hand-offs it cannot see.
 *
 * liburcu's queues publish nodes with inline-assembly atomics inside an
 * uninstrumented shared library, so TSan sees a message written by one
 * thread and read by another with no synchronization between them and
 * reports a race that cannot happen. The sender releases each message just
 * before it enqueues it and the receiver acquires it just after dequeuing,
 * which is exactly the ordering the queue guarantees. No-ops otherwise. */
#ifndef TP_TSAN_H
#define TP_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define TP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TP_TSAN 1
#endif
#endif

#ifdef TP_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tp_tsan_acquire(p) __tsan_acquire(p)
#define tp_tsan_release(p) __tsan_release(p)
#else
#define tp_tsan_acquire(p) ((void)(p))
#define tp_tsan_release(p) ((void)(p))
#endif

#endif /* TP_TSAN_H */
