/* Worker threads of a program (nb_program_set_threads): a pool that runs one
 * task at a time on nt threads, the caller being thread 0.  Workers spin
 * briefly for the next task (runs come in quick succession), then sleep on a
 * condition variable. */
#include "engine.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct nb_pool {
    int nworkers;
    pthread_t th[NB_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen; /* task generation: a new task bumps it */
    atomic_int pending;
    atomic_int sleepers;
    atomic_int quit;
    nb_pool_fn fn;
    void *arg;
    int nt;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct {
    nb_pool *pool;
    int tid;
} worker_ctx;

static void *worker_main(void *arg) {
    worker_ctx *w = arg;
    nb_pool *pool = w->pool;
    unsigned seen = 0; /* the generation the pool was created with */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
               !atomic_load(&pool->quit)) {
            if (++spins < (1 << 14)) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
        }
        if (atomic_load(&pool->quit)) break;
        seen = g;
        if (w->tid < pool->nt) pool->fn(pool->arg, w->tid, pool->nt);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
    free(w);
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
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->quit, 0);
    for (int i = 0; i < nworkers; i++) {
        worker_ctx *w = malloc(sizeof *w);
        if (w) *w = (worker_ctx){pool, i + 1};
        if (!w || pthread_create(&pool->th[i], NULL, worker_main, w) != 0) {
            free(w);
            nbc_pool_free(pool);
            return NULL;
        }
        pool->nworkers = i + 1;
    }
    return pool;
}

void nbc_pool_run(nb_pool *pool, nb_pool_fn fn, void *arg, int nt) {
    pool->fn = fn;
    pool->arg = arg;
    pool->nt = nt;
    atomic_store(&pool->pending, pool->nworkers);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_seq_cst);
    if (atomic_load(&pool->sleepers)) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, nt);
    /* wait for the workers; yield the core if one of them is not running */
    for (unsigned spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spins++) {
        if (spins < (1u << 12))
            cpu_relax();
        else
            sched_yield();
    }
}
