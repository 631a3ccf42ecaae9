/* src/scalar.h instantiated for double with unsuffixed names (sc_max, …):
 * the reference evaluator's scalar semantics, also what the tests check. */
#ifndef NB_SCALAR_F64_H
#define NB_SCALAR_F64_H
#include <math.h>
#define REAL double
#define T(name) name
#define M(fn) fn
#include "scalar.h"
#undef REAL
#undef T
#undef M
#endif
