/*
 * data.h: training data for the trainer: JSONL records in the shapes users
 * have ({"text"}, {"prompt","completion"}, alpaca, chat {"messages"},
 * pre-tokenized {"input_ids","labels"}), tokenized, masked (labels -100 on the
 * prompt unless train_on_inputs), packed or padded into rows of sequence_len+1
 * tokens, shuffled by seed, split into train and eval, sharded by rank.
 *
 * A row gives inputs = row[0..T) and targets = row[1..T+1) with -100 where no
 * loss is taken. Position is (epoch, index into the shuffled row order) so that
 * a checkpoint can resume exactly.
 */
#ifndef FT_DATA_H
#define FT_DATA_H

#include <stdint.h>
#include "ft/common.h"
#include "ft/jobspec.h"

#define FT_IGNORE_INDEX (-100)

typedef struct tokenizer tokenizer_t;   /* tokenizer.h */
typedef struct data data_t;

typedef struct {
    int64_t epoch;    /* completed passes over the training rows */
    int64_t index;    /* next row (in the epoch's shuffled order) */
} data_pos_t;

/* Loads every dataset of the spec, tokenizes, builds rows of T+1 tokens.
 * Errors name the file, the line and the reason. */
data_t *data_open(const ft_trainspec_t *spec, const tokenizer_t *tok, int T, ft_err_t *err);
void data_destroy(data_t **d);

int64_t data_n_train_rows(const data_t *d);
int64_t data_n_eval_rows(const data_t *d);

/* Fills B rows for this rank of the next global batch of B*world rows: rank r
 * takes rows r*B .. r*B+B-1 of it. inputs, targets are (B, T). Advances *pos,
 * reshuffling (seed + epoch) at each epoch boundary. */
void data_next_batch(data_t *d, data_pos_t *pos, int B, int rank, int world,
                     int32_t *inputs, int32_t *targets);
/* Eval row i (0 <= i < n_eval_rows) into inputs, targets (T each). */
void data_eval_row(const data_t *d, int64_t i, int32_t *inputs, int32_t *targets);

/* Counts tokens with a loss in targets (n entries). */
int64_t data_count_targets(const int32_t *targets, int64_t n);

#endif
