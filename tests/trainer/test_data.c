/*
 * test_data.c: the byte tokenizer and the data pipeline: every record format
 * with its loss mask (train_on_inputs off and on), packing and padding, the
 * eval split and eval_path, epoch shuffling and rank sharding, and bad records
 * reported with file:line and the reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "testutil.h"
#include "tinymodel.h"
#include "tokenizer.h"

static char dir[256];
static char model[300];
static tokenizer_t *tok;

static void spec_for(ft_trainspec_t *s, const char *file)
{
    ft_trainspec_defaults(s);
    ft_strlcpy(s->base_model, model, sizeof s->base_model);
    ft_strlcpy(s->output_dir, dir, sizeof s->output_dir);
    s->n_datasets = 1;
    snprintf(s->datasets[0].path, sizeof s->datasets[0].path, "%s/%s", dir, file);
}

static void write_data(const char *file, const char *text)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    test_write_text(p, text);
}

/* Decodes byte-tokenizer ids [a, b) into s (specials shown as <0> <1> <2>). */
static void decode(const int32_t *ids, int n, char *s, size_t cap)
{
    size_t o = 0;
    for (int i = 0; i < n && o + 4 < cap; i++) {
        if (ids[i] >= 3)
            s[o++] = (char)(ids[i] - 3);
        else
            o += (size_t)snprintf(s + o, cap - o, "<%d>", ids[i]);
    }
    s[o] = '\0';
}

/* The learnt targets (not -100) of a row, decoded. */
static void decode_targets(const int32_t *t, int n, char *s, size_t cap)
{
    int32_t tmp[512];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (t[i] != FT_IGNORE_INDEX)
            tmp[k++] = t[i];
    decode(tmp, k, s, cap);
}

static void test_tokenizer(void)
{
    ft_err_t err = {0};
    int32_t out[8];
    CHECK(tokenizer_vocab_size(tok) == 259 && tokenizer_bos(tok) == 1 && tokenizer_eos(tok) == 2,
          "byte tokenizer: 259 ids, bos 1, eos 2");
    CHECK(tokenizer_encode(tok, "A\xc3\xa9", 3, out, 8) == 3 && out[0] == 'A' + 3 &&
              out[1] == 0xc3 + 3 && out[2] == 0xa9 + 3,
          "UTF-8 bytes map to byte + 3");
    CHECK(tokenizer_encode(tok, "abc", 3, out, 2) == -1, "capacity too small: -1");
    char p[400];
    snprintf(p, sizeof p, "%s/othertok", dir);
    ft_mkdir_p(p, &err);
    snprintf(p, sizeof p, "%s/othertok/tokenizer_config.json", dir);
    test_write_text(p, "{\"tokenizer_class\":\"LlamaTokenizerFast\"}");
    snprintf(p, sizeof p, "%s/othertok", dir);
    tokenizer_t *t = tokenizer_load(p, &err);
    CHECK(!t && strstr(err.msg, "no tokenizer.json and no FtByteTokenizer"),
          "a tokenizer class without tokenizer.json refused: %s", err.msg);
    snprintf(p, sizeof p, "%s/nothing-here", dir);
    t = tokenizer_load(p, &err);
    CHECK(!t && strstr(err.msg, "pre-tokenized"), "no tokenizer_config.json: %s", err.msg);
}

/* Opens a one-file data set and returns row 0 (padded mode). */
static data_t *open1(const char *file, const char *text, bool packing, bool toi, int T,
                     const tokenizer_t *tk, ft_err_t *err)
{
    ft_trainspec_t s;
    write_data(file, text);
    spec_for(&s, file);
    s.sample_packing = packing;
    s.train_on_inputs = toi;
    return data_open(&s, tk, T, err);
}

static void first_row(data_t *d, int T, int32_t *in, int32_t *tg)
{
    data_pos_t pos = {0, 0};
    /* with one row the shuffled order is that row */
    data_next_batch(d, &pos, 1, 0, 1, in, tg);
    (void)T;
}

static void test_formats(void)
{
    ft_err_t err = {0};
    int32_t in[512], tg[512];
    char s[2048];
    const int T = 8;

    data_t *d = open1("text.jsonl", "{\"text\":\"ab\"}\n", false, false, T, tok, &err);
    CHECK(d && data_n_train_rows(d) == 1, "text: one row: %s", err.msg);
    first_row(d, T, in, tg);
    int32_t want_in[8] = {1, 'a' + 3, 'b' + 3, 2, 0, 0, 0, 0};
    int32_t want_tg[8] = {'a' + 3, 'b' + 3, 2, -100, -100, -100, -100, -100};
    CHECK(memcmp(in, want_in, sizeof want_in) == 0, "text inputs: BOS a b EOS then pad 0");
    CHECK(memcmp(tg, want_tg, sizeof want_tg) == 0, "text targets: a b EOS then -100");
    CHECK(data_count_targets(tg, T) == 3, "3 targets counted");
    data_destroy(&d);
    CHECK(d == NULL, "destroy nulls");

    d = open1("comp.jsonl", "{\"prompt\":\"Q:\",\"completion\":\"yes\"}\n", false, false, T, tok,
              &err);
    first_row(d, T, in, tg);
    decode(in, 7, s, sizeof s);
    CHECK(strcmp(s, "<1>Q:yes<2>") == 0, "completion rendered: %s", s);
    decode_targets(tg, T, s, sizeof s);
    CHECK(strcmp(s, "yes<2>") == 0, "completion: loss on the response + EOS only (%s)", s);
    CHECK(tg[0] == -100 && tg[1] == -100 && tg[2] == 'y' + 3,
          "prompt targets masked, first response byte learnt");
    data_destroy(&d);
    d = open1("comp2.jsonl", "{\"prompt\":\"Q:\",\"completion\":\"yes\"}\n", false, true, T, tok,
              &err);
    first_row(d, T, in, tg);
    decode_targets(tg, T, s, sizeof s);
    CHECK(strcmp(s, "Q:yes<2>") == 0, "train_on_inputs: the prompt is learnt too (%s)", s);
    data_destroy(&d);

    d = open1("alp.jsonl",
              "{\"instruction\":\"Add.\",\"input\":\"1 2\",\"output\":\"3\"}\n"
              "{\"instruction\":\"Hi\",\"input\":\"\",\"output\":\"Hello\"}\n",
              false, false, 400, tok, &err);
    CHECK(d && data_n_train_rows(d) == 2, "alpaca: two rows: %s", err.msg);
    data_pos_t pos = {0, 0};
    int32_t in2[800], tg2[800];
    data_next_batch(d, &pos, 2, 0, 1, in2, tg2);
    bool found_with = false, found_without = false;
    for (int r = 0; r < 2; r++) {
        decode(in2 + r * 400, 400, s, sizeof s);
        const char *want_with =
            "<1>Below is an instruction that describes a task, paired with an input that "
            "provides further context. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response:\n3<2>";
        const char *want_without =
            "<1>Below is an instruction that describes a task. Write a response that "
            "appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\n"
            "Hello<2>";
        if (strncmp(s, want_with, strlen(want_with)) == 0) {
            found_with = true;
            decode_targets(tg2 + r * 400, 400, s, sizeof s);
            CHECK(strcmp(s, "3<2>") == 0, "alpaca with input: loss on output only (%s)", s);
        }
        if (strncmp(s, want_without, strlen(want_without)) == 0) {
            found_without = true;
            decode_targets(tg2 + r * 400, 400, s, sizeof s);
            CHECK(strcmp(s, "Hello<2>") == 0, "alpaca without input: loss on output (%s)", s);
        }
    }
    CHECK(found_with && found_without, "alpaca templates with and without input exact");
    data_destroy(&d);

    d = open1("chat.jsonl",
              "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\","
              "\"content\":\"U1\"},{\"role\":\"assistant\",\"content\":\"A1\"},{\"role\":"
              "\"user\",\"content\":\"U2\"},{\"role\":\"assistant\",\"content\":\"A2\"}]}\n",
              false, false, 200, tok, &err);
    CHECK(d != NULL, "chat loads: %s", err.msg);
    first_row(d, 200, in, tg);
    decode(in, 200, s, sizeof s);
    const char *want_chat = "<1><|system|>\nS\n<|user|>\nU1\n<|assistant|>\nA1\n<|user|>\nU2\n"
                            "<|assistant|>\nA2\n<2>";
    CHECK(strncmp(s, want_chat, strlen(want_chat)) == 0, "chat template rendered exactly");
    decode_targets(tg, 200, s, sizeof s);
    CHECK(strcmp(s, "A1A2<2>") == 0, "chat: loss on assistant contents + final EOS (%s)", s);
    data_destroy(&d);

    /* ShareGPT shape renders the same as the OpenAI one */
    d = open1("sharegpt.jsonl",
              "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":"
              "\"human\",\"value\":\"U1\"},{\"from\":\"gpt\",\"value\":\"A1\"},{\"from\":"
              "\"human\",\"value\":\"U2\"},{\"from\":\"gpt\",\"value\":\"A2\"}]}\n",
              false, false, 200, tok, &err);
    CHECK(d != NULL, "ShareGPT conversations load: %s", err.msg);
    if (d) {
        int32_t in3[200], tg3[200];
        first_row(d, 200, in3, tg3);
        CHECK(memcmp(in3, in, sizeof in3) == 0 && memcmp(tg3, tg, sizeof tg3) == 0,
              "ShareGPT record gives the same row as the messages record");
        data_destroy(&d);
    }

    d = open1("tok.jsonl",
              "{\"input_ids\":[1,50,60,70,2],\"labels\":[-100,-100,60,70,2]}\n"
              "{\"input_ids\":[5,263],\"attention_mask\":[1,1]}\n",
              false, false, 6, NULL, &err);
    CHECK(d && data_n_train_rows(d) == 2, "pre-tokenized loads without a tokenizer: %s", err.msg);
    pos = (data_pos_t){0, 0};
    data_next_batch(d, &pos, 2, 0, 1, in2, tg2);
    bool ok1 = false, ok2 = false;
    for (int r = 0; r < 2; r++) {
        int32_t *a = in2 + r * 6, *t = tg2 + r * 6;
        if (a[0] == 1 && a[1] == 50 && a[4] == 2 && a[5] == 0 /* the model's pad id */ &&
            t[0] == -100 && t[1] == 60 && t[2] == 70 && t[3] == 2 && t[4] == -100)
            ok1 = true;
        if (a[0] == 5 && a[1] == 263 && t[0] == 263 && t[1] == -100)
            ok2 = true;
    }
    CHECK(ok1, "given labels used as they are (shifted into targets)");
    CHECK(ok2, "no labels: every id is learnt; id 263 < vocab 264 accepted");
    data_destroy(&d);
}

static void test_packing(void)
{
    ft_err_t err = {0};
    const int T = 4;
    /* records: <1>abc<2> (5), <1>de<2> (4), <1>f<2> (3): stream of 12 tokens,
     * rows of 5: [<1>abc<2>] [<1>de<2><1>] [f<2>] + 3 pads */
    data_t *d = open1("pack.jsonl", "{\"text\":\"abc\"}\n{\"text\":\"de\"}\n\n{\"text\":\"f\"}\n",
                      true, false, T, tok, &err);
    CHECK(d && data_n_train_rows(d) == 3,
          "packing: 12 tokens make 2 full rows of 5 + 1 partial "
          "(%lld)",
          d ? (long long)data_n_train_rows(d) : -1LL);
    int32_t in[12], tg[12];
    data_pos_t pos = {0, 0};
    data_next_batch(d, &pos, 3, 0, 1, in, tg);
    CHECK(pos.epoch == 1 && pos.index == 0, "one batch of 3 completes epoch 0");
    char s[64];
    bool r0 = false, r1 = false, r2 = false;
    for (int r = 0; r < 3; r++) {
        decode(in + r * T, T, s, sizeof s);
        char t[64];
        decode_targets(tg + r * T, T, t, sizeof t);
        if (strcmp(s, "<1>abc") == 0 && strcmp(t, "abc<2>") == 0)
            r0 = true;
        if (strcmp(s, "<1>de<2>") == 0 && strcmp(t, "de<2>") == 0)
            r1 = true; /* the BOS after EOS has label -100 */
        if (strcmp(s, "f<2><0><0>") == 0 && strcmp(t, "<2>") == 0)
            r2 = true;
    }
    CHECK(r0 && r1 && r2, "packed rows cut from the concatenated stream, last one padded");
    data_destroy(&d);

    d = open1("pad.jsonl", "{\"text\":\"abcdefgh\"}\n{\"text\":\"x\"}\n", false, false, T, tok,
              &err);
    CHECK(d && data_n_train_rows(d) == 2, "padding: one row per record");
    pos = (data_pos_t){0, 0};
    data_next_batch(d, &pos, 2, 0, 1, in, tg);
    bool trunc = false, padded = false;
    for (int r = 0; r < 2; r++) {
        decode(in + r * T, T, s, sizeof s);
        if (strcmp(s, "<1>abc") == 0 && tg[r * T + 3] == 'd' + 3)
            trunc = true;
        if (strcmp(s, "<1>x<2><0>") == 0 && tg[r * T + 2] == -100 && tg[r * T + 3] == -100)
            padded = true;
    }
    CHECK(trunc, "long record cut at T+1 tokens");
    CHECK(padded, "short record padded with pad id 0 and -100");
    data_destroy(&d);

    /* rows without a target are dropped (all labels -100, or the learnt part
     * cut off by the row length) */
    d = open1("notarget.jsonl",
              "{\"input_ids\":[1,5,6],\"labels\":[-100,-100,-100]}\n"
              "{\"prompt\":\"abcdefgh\",\"completion\":\"z\"}\n"
              "{\"input_ids\":[1,7],\"labels\":[-100,7]}\n",
              false, false, T, tok, &err);
    CHECK(d && data_n_train_rows(d) == 1,
          "padding: only the record with a target in reach "
          "makes a row (%lld)",
          d ? (long long)data_n_train_rows(d) : -1LL);
    data_destroy(&d);
    d = open1("notarget2.jsonl",
              "{\"input_ids\":[1,5,6,7,8,9,10,11,12,13],\"labels\":"
              "[-100,-100,-100,-100,-100,-100,-100,-100,-100,13]}\n",
              true, false, T, tok, &err);
    CHECK(d && data_n_train_rows(d) == 1,
          "packing: of two rows only the one with the target "
          "stays (%lld)",
          d ? (long long)data_n_train_rows(d) : -1LL);
    data_destroy(&d);
}

static void test_order_and_shards(void)
{
    ft_err_t err = {0};
    char text[4096] = "";
    /* 10 records of distinct first bytes, padded rows: row identity = first input byte */
    for (int i = 0; i < 10; i++) {
        char l[64];
        snprintf(l, sizeof l, "{\"text\":\"%c\"}\n", 'A' + i);
        strcat(text, l);
    }
    ft_trainspec_t s;
    write_data("ten.jsonl", text);
    spec_for(&s, "ten.jsonl");
    s.sample_packing = false;
    s.seed = 7;
    data_t *d = data_open(&s, tok, 4, &err), *d2 = data_open(&s, tok, 4, &err);
    CHECK(d && d2 && data_n_train_rows(d) == 10, "10 rows");
    int32_t in[40], tg[40], inb[40], tgb[40];
    data_pos_t p = {0, 0};
    int seen[10] = {0};
    char order0[11] = "", order1[11] = "";
    for (int b = 0; b < 5; b++) {
        data_next_batch(d, &p, 2, 0, 1, in, tg);
        for (int j = 0; j < 2; j++) {
            seen[in[j * 4 + 1] - 3 - 'A']++;
            order0[b * 2 + j] = (char)(in[j * 4 + 1] - 3);
        }
    }
    bool once = true;
    for (int i = 0; i < 10; i++)
        once = once && seen[i] == 1;
    CHECK(once && p.epoch == 1 && p.index == 0, "epoch 0 visits every row once (%s)", order0);
    CHECK(strcmp(order0, "ABCDEFGHIJ") != 0, "rows are shuffled");
    for (int b = 0; b < 5; b++) {
        data_next_batch(d, &p, 2, 0, 1, in, tg);
        for (int j = 0; j < 2; j++)
            order1[b * 2 + j] = (char)(in[j * 4 + 1] - 3);
    }
    CHECK(strcmp(order0, order1) != 0, "epoch 1 has another order (%s)", order1);

    /* same seed, same order; resuming from a position gives the same batches */
    data_pos_t q = {0, 0};
    char again[11] = "";
    for (int b = 0; b < 5; b++) {
        data_next_batch(d2, &q, 2, 0, 1, in, tg);
        for (int j = 0; j < 2; j++)
            again[b * 2 + j] = (char)(in[j * 4 + 1] - 3);
    }
    CHECK(strcmp(order0, again) == 0, "same seed gives the same order");
    data_pos_t r1 = {1, 4};
    data_next_batch(d2, &r1, 2, 0, 1, in, tg);
    CHECK(in[1] - 3 == order1[4] && in[5] - 3 == order1[5], "position (1, 4) resumes exactly");

    /* rank sharding: world 2, B 2 == world 1, B 4 split in halves */
    data_pos_t a = {0, 6}, b0 = {0, 6}, b1 = {0, 6};
    data_next_batch(d, &a, 4, 0, 1, in, tg);
    data_next_batch(d, &b0, 2, 0, 2, inb, tgb);
    data_next_batch(d, &b1, 2, 1, 2, inb + 8, tgb + 8);
    CHECK(memcmp(in, inb, sizeof(int32_t) * 16) == 0 && memcmp(tg, tgb, sizeof(int32_t) * 16) == 0,
          "ranks 0 and 1 of world 2 take the halves of the global batch");
    CHECK(a.epoch == 1 && a.index == 0 && b0.epoch == a.epoch && b1.index == a.index,
          "every rank advances to the same position");
    /* crossing the epoch boundary mid-batch */
    data_pos_t c = {0, 8};
    data_next_batch(d, &c, 4, 0, 1, in, tg);
    CHECK(c.epoch == 1 && c.index == 2, "a batch crossing the boundary ends at (1, 2)");
    CHECK(in[9] - 3 == order1[0] && in[13] - 3 == order1[1], "its tail comes from epoch 1's order");
    data_destroy(&d);
    data_destroy(&d2);

    /* eval split: deterministic, disjoint */
    s.val_set_size = 0.2;
    d = data_open(&s, tok, 4, &err);
    d2 = data_open(&s, tok, 4, &err);
    CHECK(d && data_n_eval_rows(d) == 2 && data_n_train_rows(d) == 8, "val 0.2: 2 eval, 8 train");
    char ev[3] = "", ev2[3] = "";
    for (int i = 0; i < 2; i++) {
        data_eval_row(d, i, in, tg);
        ev[i] = (char)(in[1] - 3);
        data_eval_row(d2, i, in, tg);
        ev2[i] = (char)(in[1] - 3);
    }
    CHECK(strcmp(ev, ev2) == 0, "eval split deterministic (%s)", ev);
    p = (data_pos_t){0, 0};
    bool disjoint = true;
    for (int b = 0; b < 4; b++) {
        data_next_batch(d, &p, 2, 0, 1, in, tg);
        for (int j = 0; j < 2; j++)
            disjoint = disjoint && in[j * 4 + 1] - 3 != ev[0] && in[j * 4 + 1] - 3 != ev[1];
    }
    CHECK(disjoint, "eval records never appear in training");
    data_destroy(&d);
    data_destroy(&d2);

    s.val_set_size = 0;
    snprintf(s.eval_path, sizeof s.eval_path, "%s/ev.jsonl", dir);
    write_data("ev.jsonl", "{\"prompt\":\"p\",\"completion\":\"c\"}\n{\"text\":\"zz\"}\n");
    d = data_open(&s, tok, 4, &err);
    CHECK(d && data_n_eval_rows(d) == 2 && data_n_train_rows(d) == 10,
          "eval_path: its 2 records are the eval rows (formats auto-detected per record)");
    data_destroy(&d);
}

static void expect_bad(const char *what, const char *text, const char *type, const char *want)
{
    ft_err_t err = {0};
    ft_trainspec_t s;
    write_data("bad.jsonl", text);
    spec_for(&s, "bad.jsonl");
    if (type) {
        for (int i = 0; ft_data_format_names[i]; i++)
            if (strcmp(ft_data_format_names[i], type) == 0)
                s.datasets[0].format = (ft_data_format_t)i;
    }
    data_t *d = data_open(&s, tok, 16, &err);
    char full[600];
    snprintf(full, sizeof full, "'%s/bad.jsonl':%s", dir, want);
    CHECK(!d && strstr(err.msg, full), "%s: '%s'", what, err.msg);
    data_destroy(&d);
}

static void test_bad_records(void)
{
    const char *good = "{\"text\":\"ok\"}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s\n%s{\"instruction\":\"x\",\"output\":5}\n", good, good);
    expect_bad("alpaca output not a string", buf, NULL, "4: field 'output': expected a string");
    snprintf(buf, sizeof buf, "%s{\"text\":\"a\",}\n", good);
    expect_bad("bad JSON", buf, NULL, "2: bad JSON");
    expect_bad("unknown shape", "{\"body\":\"x\"}\n", NULL, "1: cannot tell the record's format");
    expect_bad("top-level array", "[1,2]\n", NULL, "1: expected a JSON object");
    expect_bad("type forced", "{\"text\":\"x\"}\n", "alpaca", "1: field 'instruction' is missing");
    expect_bad("completion missing", "{\"prompt\":\"x\"}\n", NULL,
               "1: field 'completion' is missing");
    expect_bad("bad role", "{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}\n", NULL,
               "1: field 'messages[0].role': unknown role 'bot'");
    expect_bad("content not string", "{\"messages\":[{\"role\":\"user\",\"content\":[1]}]}\n", NULL,
               "1: field 'messages[0].content': expected a string");
    expect_bad("no assistant", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n", NULL,
               "1: field 'messages': no assistant message");
    expect_bad("bad ShareGPT role", "{\"conversations\":[{\"from\":\"bot\",\"value\":\"x\"}]}\n",
               NULL,
               "1: field 'conversations[0].from': unknown role 'bot' (system, human, gpt or tool)");
    expect_bad("ShareGPT value", "{\"conversations\":[{\"from\":\"gpt\",\"text\":\"x\"}]}\n",
               "chat", "1: field 'conversations[0].value': expected a string");
    expect_bad("empty messages", "{\"messages\":[]}\n", NULL,
               "1: field 'messages': expected a non-empty array");
    expect_bad("id out of vocab", "{\"input_ids\":[1,264]}\n", NULL,
               "1: field 'input_ids[1]': expected a token id in [0, 264)");
    expect_bad("negative id", "{\"input_ids\":[-3]}\n", NULL, "1: field 'input_ids[0]'");
    expect_bad("fractional id", "{\"input_ids\":[1.5]}\n", NULL, "1: field 'input_ids[0]'");
    expect_bad("labels length", "{\"input_ids\":[1,2],\"labels\":[1]}\n", NULL,
               "1: field 'labels': expected an array as long as 'input_ids' (2)");
    expect_bad("label value", "{\"input_ids\":[1,2],\"labels\":[1,-5]}\n", NULL,
               "1: field 'labels[1]': expected -100 or a token id");
    expect_bad("duplicate key", "{\"text\":\"a\",\"text\":\"b\"}\n", NULL,
               "1: bad JSON: duplicate key 'text'");

    ft_err_t err = {0};
    ft_trainspec_t s;
    write_data("empty.jsonl", "\n\n");
    spec_for(&s, "empty.jsonl");
    data_t *d = data_open(&s, tok, 16, &err);
    CHECK(!d && strstr(err.msg, "empty.jsonl': no records"), "file without records: %s", err.msg);
    spec_for(&s, "missing.jsonl");
    d = data_open(&s, tok, 16, &err);
    CHECK(!d && strstr(err.msg, "cannot open"), "missing file: %s", err.msg);
    write_data("t.jsonl", "{\"text\":\"hi\"}\n");
    spec_for(&s, "t.jsonl");
    d = data_open(&s, NULL, 16, &err);
    CHECK(!d && strstr(err.msg, "t.jsonl':1: text records need a tokenizer"),
          "text without a tokenizer: %s", err.msg);
    write_data("two.jsonl", "{\"text\":\"a\"}\n{\"text\":\"b\"}\n");
    spec_for(&s, "two.jsonl");
    s.val_set_size = 0.5;
    d = data_open(&s, tok, 16, &err);
    CHECK(d && data_n_eval_rows(d) == 1, "val 0.5 of 2 records: 1 eval");
    data_destroy(&d);
    spec_for(&s, "two.jsonl");
    d = data_open(&s, tok, 513, &err);
    CHECK(!d && strstr(err.msg, "sequence_len: 513 is more than the max_position_embeddings "
                                "(512)"),
          "rows longer than the model's context: %s", err.msg);
    write_data("one.jsonl", "{\"text\":\"a\"}\n");
    spec_for(&s, "one.jsonl");
    s.val_set_size = 0.1;
    d = data_open(&s, tok, 16, &err);
    CHECK(!d && strstr(err.msg, "leaves no training records"), "split of 1 record: %s", err.msg);
}

/* Random byte corruptions of a valid multi-format file: data_open either
 * succeeds or fails with a message naming the file (run under the sanitizer
 * build to catch memory errors). */
static void test_mutations(void)
{
    const char *valid =
        "{\"text\":\"hello\"}\n"
        "{\"prompt\":\"Q\",\"completion\":\"A\"}\n"
        "{\"instruction\":\"I\",\"input\":\"x\",\"output\":\"O\"}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\","
        "\"content\":\"a\"}]}\n"
        "{\"input_ids\":[1,5,9,2],\"labels\":[-100,5,9,2]}\n";
    size_t n = strlen(valid);
    char buf[512];
    char want[400];
    ft_trainspec_t s;
    ft_err_t err = {0};
    uint64_t x = 99;
    int ok = 0, refused = 0, bad = 0;
    spec_for(&s, "mut.jsonl");
    snprintf(want, sizeof want, "'%s/mut.jsonl'", dir);
    for (int it = 0; it < 300; it++) {
        memcpy(buf, valid, n + 1);
        for (int k = 0; k < 1; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            char c = (char)(x >> 56);
            buf[(x >> 20) % n] = c ? c : ' ';
        }
        write_data("mut.jsonl", buf);
        data_t *d = data_open(&s, tok, 16, &err);
        if (d) {
            ok++;
            data_destroy(&d);
        } else {
            refused++;
            if (!strstr(err.msg, want) && !strstr(err.msg, "no row"))
                bad++;
        }
    }
    CHECK(bad == 0, "300 corrupted files: %d loaded, %d refused naming the file, %d other", ok,
          refused, bad);
}

/* A BPE model (the SentencePiece-style fixture of test_tokenizer_bpe): the
 * masks of a completion record fall on the tokens of each part, the response
 * continues the prompt (no word mark), and BOS/EOS come from config.json. */
static void test_bpe_record(const char *fixtures)
{
    ft_err_t err = {0};
    char mdir[400], p[500];
    tinymodel_opts_t o;
    tinymodel_defaults(&o);
    o.layers = 1;
    o.vocab = 960;
    snprintf(mdir, sizeof mdir, "%s/bpe-model", dir);
    CHECK(tinymodel_write(mdir, &o, &err) == 0, "tiny model with vocab 960");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", mdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/bpe-sp-norm/tokenizer.json", fixtures);
    size_t len;
    char *tj = ft_read_file(p, 1 << 24, &len, &err);
    CHECK(tj != NULL, "fixture tokenizer.json read: %s", err.msg);
    if (!tj)
        return;
    snprintf(p, sizeof p, "%s/tokenizer.json", mdir);
    test_write_text(p, tj);
    free(tj);
    tokenizer_t *bt = tokenizer_load(mdir, &err);
    CHECK(bt != NULL, "SentencePiece-style tokenizer loads: %s", err.msg);
    if (!bt)
        return;
    int32_t pr[64], rs[64];
    int64_t npr = tokenizer_encode(bt, "Name it:", 8, pr, 64);
    int64_t nrs = tokenizer_encode_cont(bt, " the way", 8, rs, 64);
    ft_trainspec_t s;
    write_data("bpe.jsonl", "{\"prompt\":\"Name it:\",\"completion\":\" the way\"}\n");
    spec_for(&s, "bpe.jsonl");
    ft_strlcpy(s.base_model, mdir, sizeof s.base_model);
    s.sample_packing = false;
    data_t *d = data_open(&s, bt, 32, &err);
    CHECK(d != NULL, "data opens with the BPE tokenizer: %s", err.msg);
    if (d) {
        int32_t in[32], tg[32];
        data_pos_t pos = {0, 0};
        data_next_batch(d, &pos, 1, 0, 1, in, tg);
        bool same = in[0] == 1;
        for (int64_t i = 0; i < npr; i++)
            same = same && in[1 + i] == pr[i];
        for (int64_t i = 0; i < nrs; i++)
            same = same && in[1 + npr + i] == rs[i];
        same = same && in[1 + npr + nrs] == 2;
        CHECK(same, "row = BOS (1), prompt ids (%lld), response ids continuing it (%lld), EOS (2)",
              (long long)npr, (long long)nrs);
        bool mask = true;
        for (int64_t i = 0; i < 32; i++) {
            int64_t tok_at = i + 1; /* target i is row position i + 1 */
            bool learnt = tok_at > npr && tok_at <= npr + nrs + 1;
            mask = mask && (learnt ? tg[i] == in[i + 1] || tok_at == npr + nrs + 1
                                   : tg[i] == FT_IGNORE_INDEX);
        }
        CHECK(mask && data_count_targets(tg, 32) == nrs + 1,
              "loss exactly on the response ids and EOS (%lld targets)",
              (long long)data_count_targets(tg, 32));
        data_destroy(&d);
    }
    tokenizer_destroy(&bt);
}

int main(int argc, char **argv)
{
    ft_err_t err = {0};
    tinymodel_opts_t o;
    test_tmpdir(dir, sizeof dir, "data");
    snprintf(model, sizeof model, "%s/model", dir);
    tinymodel_defaults(&o);
    o.layers = 1;
    if (tinymodel_write(model, &o, &err) < 0) {
        printf("tiny model: %s\n", err.msg);
        return 1;
    }
    tok = tokenizer_load(model, &err);
    CHECK(tok != NULL, "byte tokenizer loads from the tiny model: %s", err.msg);
    test_tokenizer();
    test_formats();
    test_packing();
    test_order_and_shards();
    test_bad_records();
    test_mutations();
    if (argc > 1)
        test_bpe_record(argv[1]);
    tokenizer_destroy(&tok);
    return test_finish(dir);
}
