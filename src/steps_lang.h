/* The narrative words of a derivation (nb_derivation, steps.c), one table per
 * language: the mathematics comes from the printers, only these connecting
 * words change.  Adding a language is one file defining a table and one line
 * in STEPS_LANGUAGES below.  Notes that LaTeX sets in \text{} keep to words
 * (no ᵀ, ⊙: pdflatex has no glyph for them).  Strings marked (printf) take the %s arguments
 * named in their comment, in that order. */
#ifndef NB_STEPS_LANG_H
#define NB_STEPS_LANG_H

typedef struct {
    const char *code;  /* "en" */
    const char *title; /* (printf) function, variable, layout: the first line */
    const char *numerator_layout, *denominator_layout;
    const char *intermediates;    /* heading of the intermediate variables */
    const char *no_intermediates; /* the function is one operation of the variable */
    const char *partials;         /* heading of the partial derivatives */
    const char *chain_single;     /* heading: single-variable chain rule (scalars, one path) */
    const char *chain_partial;    /* heading: chain rule of partial derivatives (scalars, one path, f of several) */
    const char *chain_total;      /* heading: total-derivative rule (scalars, several paths) */
    const char *chain_numerator;  /* heading: vector chain rule in numerator layout */
    const char *chain_denominator;/* heading: vector chain rule in denominator layout (the order flips) */
    const char *paths_add;        /* note on a line summing several paths */
    const char *direct;           /* heading: no chain, the partial derivative is the result */
    const char *tensor;           /* the intermediate Jacobians would be tensors: reverse mode directly */
    const char *substitute;       /* heading: the raw chain-rule product */
    const char *raw_transposed;   /* note: denominator layout's raw product is the numerator one transposed */
    const char *constant;         /* f does not depend on v */
    const char *itself;           /* f is v */
    const char *collected;        /* note on the simplified whole: the steps above and plain arithmetic */
    const char *simplify;         /* heading: the named simplifications */
    const char *nothing_to_simplify;
    const char *by;               /* before a rule's name: "by" */
    const char *constant_arithmetic; /* the rule NB_RULE_CONSTANT_ARITHMETIC: numbers folded */
    const char *result;           /* heading of the final result */
    const char *several_scalars;  /* (printf) variable list: one derivation per variable follows */
    const char *section;          /* (printf) variable: heading of one variable's derivation */
    /* the partials side by side: the gradient (a row in numerator layout, a
     * column in denominator layout), the Jacobian (a column per variable in
     * numerator layout, a row per variable in denominator layout) */
    const char *assemble_gradient_row, *assemble_gradient_column, *assemble_jacobian_columns, *assemble_jacobian_rows;
    const char *note_open, *note_close; /* around a note after an equation: "(" ")" */
    const char *separator;              /* between the parts of a note: "; " */
    /* (printf) the type of an intermediate: dimensions as arguments */
    const char *type_scalar, *type_vector, *type_row, *type_matrix;
    /* structure of a partial derivative */
    const char *scalar, *zero, *identity, *scaled_identity, *diagonal, *ones_row, *ones_column, *row, *column,
        *matrix, *matrix_gradient;
} nb_steps_lang;

#define STEPS_LANGUAGES(X) X(en) X(zh)
#define STEPS_DECLARE(code) extern const nb_steps_lang nb_steps_lang_##code;
STEPS_LANGUAGES(STEPS_DECLARE)
#undef STEPS_DECLARE

#endif
