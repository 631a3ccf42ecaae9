/* Worker threads of a program (nb_program_set_threads).  A task is split
 * into nt shares (share k uses the per-thread resources of slot k); the
 * caller and the workers claim shares with an atomic counter, so whichever
 * threads are running do the work: on a busy machine where a worker is not
 * scheduled, the caller runs its shares too instead of waiting a time slice
 * for it.  Workers spin briefly for the next task (runs come in quick
 * succession), then sleep on a condition variable. */
#include "engine.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct nb_pool {
    int nworkers;
    pthread_t th[NB_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the task: generation << 32 | next unclaimed share; the generation
     * changes with every task, so a late claim for an old one fails */
    _Atomic uint64_t state;
    atomic_int done; /* shares finished */
    atomic_int sleepers;
    atomic_int quit;
    _Atomic(nb_pool_fn) fn;
    _Atomic(void *) arg;
    atomic_int nt;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs shares of task generation gen until none is left.  The
 * task's fields are read after a successful claim: the caller does not
 * change them before every share of gen is done. */
static void run_shares(nb_pool *pool, uint32_t gen) {
    for (;;) {
        uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
        uint32_t k = (uint32_t)s;
        if ((uint32_t)(s >> 32) != gen || k >= (uint32_t)atomic_load_explicit(&pool->nt, memory_order_relaxed))
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        int nt = atomic_load_explicit(&pool->nt, memory_order_relaxed);
        atomic_load_explicit(&pool->fn, memory_order_relaxed)(atomic_load_explicit(&pool->arg, memory_order_relaxed),
                                                              (int)k, nt);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
    }
}

static uint32_t generation(nb_pool *pool) {
    return (uint32_t)(atomic_load_explicit(&pool->state, memory_order_acquire) >> 32);
}

static void *worker_main(void *arg) {
    nb_pool *pool = arg;
    uint32_t seen = 0; /* the generation the pool was created with */
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = generation(pool)) == seen && !atomic_load(&pool->quit)) {
            if (++spins < (1 << 14)) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while (generation(pool) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
        }
        if (atomic_load(&pool->quit)) break;
        seen = g;
        run_shares(pool, g);
    }
    return NULL;
}

void nbc_pool_free(nb_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->quit, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nworkers; i++)
        pthread_join(pool->th[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool);
}

nb_pool *nbc_pool_new(int nworkers) {
    if (nworkers < 0 || nworkers > NB_MAX_THREADS) return NULL;
    nb_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    atomic_init(&pool->state, 0);
    atomic_init(&pool->done, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->quit, 0);
    atomic_init(&pool->fn, NULL);
    atomic_init(&pool->arg, NULL);
    atomic_init(&pool->nt, 0);
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&pool->th[i], NULL, worker_main, pool) != 0) {
            nbc_pool_free(pool);
            return NULL;
        }
        pool->nworkers = i + 1;
    }
    return pool;
}

void nbc_pool_run(nb_pool *pool, nb_pool_fn fn, void *arg, int nt) {
    atomic_store_explicit(&pool->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&pool->nt, nt, memory_order_relaxed);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    uint32_t gen = generation(pool) + 1;
    atomic_store_explicit(&pool->state, (uint64_t)gen << 32, memory_order_release);
    if (atomic_load(&pool->sleepers)) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    run_shares(pool, gen);
    /* wait for the shares the workers claimed; yield the core if one of
     * them is not running */
    for (unsigned spins = 0; atomic_load_explicit(&pool->done, memory_order_acquire) < nt; spins++) {
        if (spins < (1u << 12))
            cpu_relax();
        else
            sched_yield();
    }
}
