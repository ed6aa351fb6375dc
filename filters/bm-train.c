/* bm-train - training on record files.
 *
 *   bm-train --mode linear|finetune|fusion|regularized|contrastive -o OUT [OPTION]... TRAIN.bmr
 *
 * This file is the command line: options, their checks and defaults, what
 * each mode loads, and the dispatch to a mode's task (train_task.h). The
 * training itself (epochs, accumulation, schedule, validation, best and
 * last checkpoints) is train_loop.c's; the data train_data.c's; options in
 * checkpoints and --resume train_opts.c's and train_ckpt.c's. man bm-train. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "loss.h"
#include "model.h"
#include "train_task.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-train --mode linear -o OUT.safetensors [OPTION]... TRAIN.bmr\n"
    "       bm-train --mode finetune -m MODEL -o OUT.safetensors [OPTION]... TRAIN.bmr\n"
    "       bm-train --mode fusion|regularized|contrastive -m MODEL -o OUT.safetensors [OPTION]... TRAIN.bmr\n"
    "Train a linear head on the features of the records of TRAIN.bmr (a file, not a\n"
    "pipe), or (finetune) the image tower of MODEL and a head end to end on their\n"
    "\"image\" u8 [3,S,S] (or larger: random-resized-crop + flip), or (fusion,\n"
    "regularized) both towers, a co-attention fusion and a head on \"image\" and\n"
    "\"text\", or (contrastive) both towers on image-caption pairs. Task and classes\n"
    "come from its header. Writes OUT (the best epoch) and OUT.last.safetensors\n"
    "(the last epoch) at each epoch end.\n"
    "\n"
    "  -M, --mode MODE          linear, finetune, fusion, regularized or contrastive\n"
    "  -o, --output FILE        the checkpoint (.safetensors)\n"
    "  -m, --model DIR|FILE     all but linear: the model (hub folder, .bin, .safetensors)\n"
    "      --lr-encoder X       finetune, fusion, regularized: the towers' learning rate\n"
    "                           (default 1e-5)\n"
    "      --lr-head X          finetune, fusion, regularized: the head's (and fusion's,\n"
    "                           prompts') learning rate (default 1e-3)\n"
    "      --unlock-last N      finetune, fusion, regularized: train only the last N blocks\n"
    "                           of the image tower, its final norm and projection\n"
    "                           (default: the whole tower)\n"
    "      --freeze-tower       finetune, fusion, regularized: do not train the image tower\n"
    "      --features img|txt|both  img_emb (default), txt_emb, or both concatenated\n"
    "  -e, --epochs N           epochs (default 10)\n"
    "  -b, --batch N            batch size (default 64; finetune, fusion, regularized 16;\n"
    "                           contrastive 32)\n"
    "      --lr X               linear, contrastive: peak learning rate (default 1e-3;\n"
    "                           contrastive 5e-4)\n"
    "      --weight-decay X     AdamW decoupled weight decay of matrices, not of\n"
    "                           biases, norms, embeddings (default 0; contrastive 0.2)\n"
    "      --warmup N           linear warm-up steps, then cosine decay (default 0)\n"
    "      --clip X             clip the gradients' global norm at X (default 0: off)\n"
    "      --accum N            step the optimizer every N batches (the last group of an\n"
    "                           epoch may be shorter) on the gradient of their mean\n"
    "                           loss: an effective batch of N x --batch (default 1)\n"
    "      --dropout P          drop each feature fed to the head with probability P\n"
    "                           while training, scaling the kept by 1/(1-P) (default 0)\n"
    "      --seed N             subset and shuffling seed (default 0)\n"
    "      --fraction F         train on a stratified seeded subset (0 < F <= 1)\n"
    "      --pos-weight none|inverse-freq  multilabel BCE weights (default inverse-freq)\n"
    "      --val FILE           evaluate each epoch; OUT keeps the best epoch\n"
    "      --select loss|accuracy|balanced_accuracy|auc_macro  (default: loss)\n"
    "      --patience N         stop after N epochs without improvement (needs --val)\n"
    "      --init FILE          linear, finetune: start from head.weight/head.bias of FILE\n"
    "      --resume CKPT        continue from OUT.last.safetensors of an earlier run\n"
    "      --stop-after N       end after epoch N of the schedule (resume later)\n"
    "      --device DEV         cpu (default), cuda or cuda:N: finetune's steps and\n"
    "                           evaluations on a GPU (linear's head stays on the CPU)\n"
    "      --precision P        on a GPU: fp32, bf16 (default) or fp16 activations\n"
    "  -j, --threads N          threads (default: OpenMP's)\n"
    "      --log FILE           JSON lines: one per step and one per epoch\n"
    "  -q, --quiet              no progress line or summary\n"
    "  -h, --help               this help\n"
    "Multimodal modes (fusion, regularized, contrastive):\n"
    "      --fusion-layers N    fusion, regularized: co-attention layers (default 2)\n"
    "      --fusion-width N     their width (default: the text tower's)\n"
    "      --fusion-heads N     their attention heads (default width/64, at least 1)\n"
    "      --text key|prompt|both  the text tower reads the records' \"text\" (key), learned\n"
    "                           prompt vectors only (prompt), or the prompt vectors then\n"
    "                           the text (both) (default: fusion key, regularized prompt)\n"
    "      --n-ctx N            learned prompt vectors (default 8)\n"
    "      --allow-label-text   train on texts that name a class (refused by default)\n"
    "      --freeze-text        fusion, regularized: do not train the text tower\n"
    "      --unlock-text-last N fusion, regularized: train only its last N layers\n"
    "      --lock-image         contrastive: do not train the image tower\n"
    "      --lock-text          contrastive: do not train the text tower\n"
    "      --patch-dropout P    contrastive: drop image patches with probability P (default 0)\n"
    "      --grad-checkpoint    recompute activations in the backward: less memory, slower\n"
    "\n"
    "Exit status: 0 ok, 1 bad input or a non-finite loss, 2 usage.\n";

/* what the command line said beyond the kept options, for the mode checks */
typedef struct {
  const char *mode;
  int model, ft, lr, text, nctx, fusion, textlock, lock, pdrop, gck, allow, posw, dropout;
} seen;

static int is_mode(const bm_train_opts *o, int a, int b, int c) { return o->mode == a || o->mode == b || o->mode == c; }

/* Which options go with which modes, and the defaults that depend on the
 * mode (those that depend on the model: mode_model_defaults). */
static void check_mode(bm_train_opts *o, const seen *s) {
  const char *mn = bm_mode_names[o->mode];
  if (o->mode == BM_MODE_LINEAR && (s->ft || s->model))
    bm_usage_die("-m, --lr-encoder, --lr-head, --unlock-last and --freeze-tower are for --mode finetune");
  if (!BM_MODE_MULTIMODAL(o->mode) && (s->text || s->nctx || s->fusion || s->textlock || s->lock || s->pdrop ||
                                       s->gck || s->allow))
    bm_usage_die("--fusion-*, --text, --n-ctx, --allow-label-text, --freeze-text, --unlock-text-last, --lock-image, "
                 "--lock-text, --patch-dropout and --grad-checkpoint are for --mode fusion, regularized or "
                 "contrastive");
  if (o->mode == BM_MODE_LINEAR) return;
  if (o->mode == BM_MODE_FINETUNE) {
    if (!o->model && !o->resume) bm_usage_die("--mode finetune needs -m MODEL (the model whose image tower it trains)");
    if (o->model && o->resume) bm_usage_die("-m and --resume: a resumed run goes on from the tower of its checkpoint");
  }
  if (!o->model && !o->resume) bm_usage_die("--mode %s needs -m MODEL (the model whose towers it trains)", mn);
  if (o->model && o->resume) bm_usage_die("-m and --resume: a resumed run goes on from the towers of its checkpoint");
  if (is_mode(o, BM_MODE_FINETUNE, BM_MODE_FUSION, BM_MODE_REGULARIZED)) {
    if (s->lr) bm_usage_die("--lr: --mode %s takes --lr-encoder (the %s) and --lr-head (the head)", mn,
                            o->mode == BM_MODE_FINETUNE ? "tower" : "towers");
    if (o->freeze && o->given[O_UNLOCK]) bm_usage_die("--freeze-tower and --unlock-last: choose one");
  }
  if (o->feat != BM_FEAT_IMG)
    bm_usage_die("--features: --mode %s trains on images (its head reads img_emb)", mn);
  if (o->mode == BM_MODE_FINETUNE) return;
  if (o->init) bm_usage_die("--init: --mode %s starts its head and fusion afresh (--init is for linear and finetune)", mn);
  if (o->freeze_text && o->given[O_UNLOCK_TEXT]) bm_usage_die("--freeze-text and --unlock-text-last: choose one");
  if (o->mode == BM_MODE_CONTRASTIVE) {
    if (s->ft) bm_usage_die("--lr-encoder, --lr-head, --unlock-last and --freeze-tower: --mode contrastive takes --lr "
                            "and --lock-image / --lock-text");
    if (s->fusion || s->text || s->nctx || s->textlock)
      bm_usage_die("--fusion-*, --text, --n-ctx, --freeze-text and --unlock-text-last: --mode contrastive has no "
                   "fusion and reads the captions (\"text\")");
    if (s->allow) bm_usage_die("--allow-label-text: --mode contrastive trains on captions, not classes");
    if (s->posw || s->dropout) bm_usage_die("--pos-weight and --dropout: --mode contrastive has no head");
    if (o->select != BM_SEL_LOSS) bm_usage_die("--select %s: --mode contrastive selects on the validation loss",
                                               bm_sel_names[o->select]);
    if (o->lock_image && o->lock_text) bm_usage_die("--lock-image and --lock-text: nothing would train");
    o->text = BM_TEXT_KEY;
    /* open_clip's defaults for CLIP training */
    o->beta2 = 0.98, o->eps = 1e-6;
    if (!o->given[O_LR]) o->lr = 5e-4;
    if (!o->given[O_WD]) o->wd = 0.2;
    return;
  }
  if (s->lock || s->pdrop)
    bm_usage_die("--lock-image, --lock-text and --patch-dropout are for --mode contrastive (fusion and regularized: "
                 "--freeze-tower, --freeze-text)");
  if (!o->given[O_TEXT]) o->text = o->mode == BM_MODE_FUSION ? BM_TEXT_KEY : BM_TEXT_PROMPT;
  if (o->text == BM_TEXT_KEY && s->nctx) bm_usage_die("--n-ctx: --text key feeds no prompt vectors");
}

/* Defaults and checks that need the model (a resumed run's come from its
 * checkpoint and are checked the same). */
static void mode_model_defaults(bm_train_opts *o, const bm_model *m) {
  const char *mn = bm_mode_names[o->mode];
  if (o->mode == BM_MODE_CONTRASTIVE) return;
  if (!o->fusion_width) o->fusion_width = m->bert.width;
  if (!o->fusion_heads) o->fusion_heads = o->fusion_width / 64 > 0 ? o->fusion_width / 64 : 1;
  if (o->fusion_width % o->fusion_heads)
    bm_usage_die("--fusion-width %ld is not a multiple of --fusion-heads %ld", o->fusion_width, o->fusion_heads);
  long prompt = o->text == BM_TEXT_KEY ? 0 : o->n_ctx;
  if (prompt + 2 > m->bert.context)
    bm_usage_die("--n-ctx %ld: with [CLS] and [SEP] the prompt is longer than the text tower's %d positions (--mode %s)",
                 o->n_ctx, m->bert.context, mn);
  if (o->unlock_text > m->bert.depth)
    bm_usage_die("--unlock-text-last %ld: the text tower has %d layers", o->unlock_text, m->bert.depth);
}

static void parse_args(int argc, char **argv, bm_train_opts *o) {
  enum { FEAT = 256, LR, WD, WARMUP, CLIP, SEED, FRAC, POSW, VAL, SEL, PAT, INIT, RESUME, STOP, LOG, LRENC, LRHEAD,
         UNLOCK, FREEZE, ACCUM, DROPOUT, FLAYERS, FWIDTH, FHEADS, TEXT, NCTX, ALLOW, FREEZE_TEXT, UNLOCK_TEXT,
         LOCK_IMAGE, LOCK_TEXT, PDROP, GCK, DEVICE, PREC };
  static const struct option longs[] = {
      {"mode", required_argument, 0, 'M'},      {"output", required_argument, 0, 'o'},
      {"features", required_argument, 0, FEAT}, {"epochs", required_argument, 0, 'e'},
      {"batch", required_argument, 0, 'b'},     {"lr", required_argument, 0, LR},
      {"weight-decay", required_argument, 0, WD}, {"warmup", required_argument, 0, WARMUP},
      {"clip", required_argument, 0, CLIP},     {"seed", required_argument, 0, SEED},
      {"fraction", required_argument, 0, FRAC}, {"pos-weight", required_argument, 0, POSW},
      {"val", required_argument, 0, VAL},       {"select", required_argument, 0, SEL},
      {"patience", required_argument, 0, PAT},  {"init", required_argument, 0, INIT},
      {"resume", required_argument, 0, RESUME}, {"stop-after", required_argument, 0, STOP},
      {"threads", required_argument, 0, 'j'},   {"log", required_argument, 0, LOG},
      {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
      {"model", required_argument, 0, 'm'},     {"lr-encoder", required_argument, 0, LRENC},
      {"lr-head", required_argument, 0, LRHEAD}, {"unlock-last", required_argument, 0, UNLOCK},
      {"freeze-tower", no_argument, 0, FREEZE}, {"accum", required_argument, 0, ACCUM},
      {"dropout", required_argument, 0, DROPOUT},
      {"fusion-layers", required_argument, 0, FLAYERS}, {"fusion-width", required_argument, 0, FWIDTH},
      {"fusion-heads", required_argument, 0, FHEADS}, {"text", required_argument, 0, TEXT},
      {"n-ctx", required_argument, 0, NCTX},    {"allow-label-text", no_argument, 0, ALLOW},
      {"freeze-text", no_argument, 0, FREEZE_TEXT}, {"unlock-text-last", required_argument, 0, UNLOCK_TEXT},
      {"lock-image", no_argument, 0, LOCK_IMAGE}, {"lock-text", no_argument, 0, LOCK_TEXT},
      {"patch-dropout", required_argument, 0, PDROP}, {"grad-checkpoint", no_argument, 0, GCK},
      {"device", required_argument, 0, DEVICE}, {"precision", required_argument, 0, PREC},
      {0, 0, 0, 0}};
  seen s = {0};
  int c;
  while ((c = getopt_long(argc, argv, "M:m:o:e:b:j:qh", longs, NULL)) != -1) {
    const char *name = NULL;
    for (int i = 0; longs[i].name; i++)
      if (longs[i].val == c) name = longs[i].name;
    switch (c) {
    case 'M': s.mode = optarg; break;
    case 'o': o->out = optarg; break;
    case FEAT:
      if (bm_feat_parse(optarg, &o->feat)) bm_usage_die("--features %s: expected img, txt or both", optarg);
      o->given[O_FEAT] = 1;
      break;
    case 'm': o->model = optarg, s.model = 1; break;
    case FREEZE: o->freeze = 1, s.ft = 1; break;
    case 'e': case 'b': case WARMUP: case SEED: case PAT: case STOP: case 'j': case UNLOCK: case ACCUM:
    case FLAYERS: case FWIDTH: case FHEADS: case NCTX: case UNLOCK_TEXT: {
      long v, lo = c == WARMUP || c == SEED || c == PAT || c == UNLOCK || c == UNLOCK_TEXT ? 0 : 1;
      long hi = c == SEED ? LONG_MAX : c == 'j' ? 1024 : c == 'b' || c == ACCUM ? 1 << 20
              : c == FLAYERS || c == FHEADS || c == NCTX || c == UNLOCK_TEXT ? 1024 : c == FWIDTH ? 1 << 16 : 1L << 40;
      if (bm_parse_long(optarg, lo, hi, &v)) {
        if (hi <= 1 << 16 && c != 'j') bm_usage_die("--%s %s: expected a whole number from %ld to %ld", name, optarg, lo, hi);
        bm_usage_die("--%s %s: expected a whole number >= %ld", name, optarg, lo);
      }
      if (c == 'e') o->epochs = v, o->given[O_EPOCHS] = 1;
      if (c == 'b') o->batch = v, o->given[O_BATCH] = 1;
      if (c == WARMUP) o->warmup = v, o->given[O_WARMUP] = 1;
      if (c == SEED) o->seed = v, o->given[O_SEED] = 1;
      if (c == PAT) o->patience = v, o->given[O_PATIENCE] = 1;
      if (c == STOP) o->stop_after = v;
      if (c == 'j') o->threads = v;
      if (c == UNLOCK) o->unlock = v, s.ft = 1, o->given[O_UNLOCK] = 1;
      if (c == ACCUM) o->accum = v, o->given[O_ACCUM] = 1;
      if (c == FLAYERS) o->fusion_layers = v, s.fusion = 1, o->given[O_FLAYERS] = 1;
      if (c == FWIDTH) o->fusion_width = v, s.fusion = 1, o->given[O_FWIDTH] = 1;
      if (c == FHEADS) o->fusion_heads = v, s.fusion = 1, o->given[O_FHEADS] = 1;
      if (c == NCTX) o->n_ctx = v, s.nctx = 1, o->given[O_NCTX] = 1;
      if (c == UNLOCK_TEXT) o->unlock_text = v, s.textlock = 1, o->given[O_UNLOCK_TEXT] = 1;
      break;
    }
    case LR: case WD: case CLIP: case FRAC: case LRENC: case LRHEAD: {
      double v;
      int is_lr = c == LR || c == LRENC || c == LRHEAD;
      if (bm_parse_double(optarg, &v) || !isfinite(v) || v < 0 || (is_lr && v == 0) ||
          (c == FRAC && (v <= 0 || v > 1)))
        bm_usage_die("--%s %s: expected a %s", name, optarg,
                     c == FRAC ? "fraction in (0, 1]" : is_lr ? "positive number" : "number >= 0");
      if (c == LR) o->lr = v, o->given[O_LR] = 1, s.lr = 1;
      if (c == LRENC) o->lr_enc = v, s.ft = 1, o->given[O_LRENC] = 1;
      if (c == LRHEAD) o->lr_head = v, s.ft = 1, o->given[O_LRHEAD] = 1;
      if (c == WD) o->wd = v, o->given[O_WD] = 1;
      if (c == CLIP) o->clip = v, o->given[O_CLIP] = 1;
      if (c == FRAC) o->fraction = v, o->given[O_FRACTION] = 1;
      break;
    }
    case DROPOUT: case PDROP: { /* P = 1 would drop everything (and scale by infinity) */
      double v;
      if (bm_parse_double(optarg, &v) || !(v >= 0 && v < 1))
        bm_usage_die("--%s %s: expected a probability in [0, 1)", name, optarg);
      if (c == DROPOUT) o->dropout = v, o->given[O_DROPOUT] = 1, s.dropout = 1;
      else o->patch_dropout = v, o->given[O_PDROP] = 1, s.pdrop = 1;
      break;
    }
    case TEXT:
      o->text = bm_name_index(optarg, bm_text_names, BM_NTEXT);
      if (o->text < 0) bm_usage_die("--text %s: expected key, prompt or both", optarg);
      o->given[O_TEXT] = 1, s.text = 1;
      break;
    case ALLOW: o->allow_label_text = 1, s.allow = 1; break;
    case FREEZE_TEXT: o->freeze_text = 1, s.textlock = 1; break;
    case LOCK_IMAGE: o->lock_image = 1, s.lock = 1; break;
    case LOCK_TEXT: o->lock_text = 1, s.lock = 1; break;
    case GCK: o->grad_checkpoint = 1, s.gck = 1; break;
    case POSW:
      if (!strcmp(optarg, "none")) o->pos_weight = 0;
      else if (!strcmp(optarg, "inverse-freq")) o->pos_weight = 1;
      else bm_usage_die("--pos-weight %s: expected none or inverse-freq", optarg);
      o->given[O_POSW] = 1, s.posw = 1;
      break;
    case SEL:
      o->select = bm_name_index(optarg, bm_sel_names, BM_NSEL);
      if (o->select < 0) bm_usage_die("--select %s: expected loss, accuracy, balanced_accuracy or auc_macro", optarg);
      o->given[O_SELECT] = 1;
      break;
    case DEVICE:
      if (bm_device_is_cuda(optarg) < 0) bm_usage_die("--device: cpu, cuda or cuda:N, not %s", optarg);
      o->device = optarg;
      break;
    case PREC:
    {
      bm_prec pr;
      if (bm_prec_parse(optarg, &pr)) bm_usage_die("--precision: fp32, bf16 or fp16, not %s", optarg);
      o->prec = (int)pr, o->prec_given = 1;
    }
      break;
    case VAL: o->val = optarg; break;
    case INIT: o->init = optarg; break;
    case RESUME: o->resume = optarg; break;
    case LOG: o->log = optarg; break;
    case 'q': o->quiet = 1; break;
    case 'h': fputs(usage, stdout); exit(0);
    default: bm_usage_die("unknown option (see --help)");
    }
  }
  if (!s.mode) bm_usage_die("--mode is required: linear, finetune, fusion, regularized or contrastive");
  o->mode = bm_name_index(s.mode, bm_mode_names, BM_NMODES);
  if (o->mode < 0) bm_usage_die("--mode %s: expected linear, finetune, fusion, regularized or contrastive", s.mode);
  check_mode(o, &s);
  if (!o->out) bm_usage_die("-o OUT.safetensors is required");
  if (argc - optind != 1) bm_usage_die("one training file (see --help)");
  o->train = argv[optind];
  if (o->patience && !o->val) bm_usage_die("--patience needs --val (it stops on the validation metric)");
  if (o->given[O_SELECT] && !o->val) bm_usage_die("--select needs --val");
  if (o->init && o->resume) bm_usage_die("--init and --resume: a resumed run continues from its checkpoint");
}

/* The training data must be what the checkpoint was trained on. */
static void resume_fits(const bm_train_opts *o, const bm_linhead *ck, const bm_trainset *ds) {
  const char *p = o->resume;
  if (ck->C != ds->C)
    bm_die("%s: the checkpoint has %d classes, %s names %d: not the data it was trained on", p, ck->C, ds->name, ds->C);
  for (int k = 0; k < ds->C; k++)
    if (strcmp(ck->classes[k], ds->classes[k]))
      bm_die("%s: class %d is \"%s\" in the checkpoint, \"%s\" in %s", p, k, ck->classes[k], ds->classes[k], ds->name);
  if (ck->multilabel != ds->multilabel)
    bm_die("%s: a %s checkpoint, but %s is %s", p, ck->multilabel ? "multilabel" : "multiclass", ds->name,
           ds->multilabel ? "multilabel" : "multiclass");
  if (o->mode == BM_MODE_FINETUNE && ck->D != ds->model->vit.embed_dim)
    bm_die("%s: a head on %d features, the checkpoint's tower makes %d", p, ck->D, ds->model->vit.embed_dim);
  if (o->mode == BM_MODE_LINEAR && (ck->dims[0] != ds->dims[0] || ck->dims[1] != ds->dims[1]))
    bm_die("%s: features of width %d+%d in the checkpoint, %d+%d in %s (img_emb+txt_emb)", p, ck->dims[0],
           ck->dims[1], ds->dims[0], ds->dims[1], ds->name);
}

/* The validation set must be the training set's task and classes. */
static void val_fits(const bm_trainset *vs, const bm_trainset *ds) {
  if (vs->pairs != ds->pairs)
    bm_die("%s: %s, %s: %s", vs->name, vs->pairs ? "image-caption pairs" : "a classification set", ds->name,
           ds->pairs ? "image-caption pairs" : "a classification set");
  if (vs->C != ds->C || vs->multilabel != ds->multilabel)
    bm_die("%s: %s with %d classes, %s: %s with %d", vs->name, vs->multilabel ? "multilabel" : "multiclass", vs->C,
           ds->name, ds->multilabel ? "multilabel" : "multiclass", ds->C);
  for (int k = 0; k < ds->C; k++)
    if (strcmp(vs->classes[k], ds->classes[k]))
      bm_die("%s: class %d is \"%s\", in %s \"%s\"", vs->name, k, vs->classes[k], ds->name, ds->classes[k]);
}

/* What a mode's records hold (train_data.h). */
static int mode_needs(const bm_train_opts *o) {
  switch (o->mode) {
  case BM_MODE_LINEAR: return BM_NEED_FEATURES | BM_NEED_TARGET;
  case BM_MODE_FINETUNE: return BM_NEED_IMAGE | BM_NEED_TARGET;
  case BM_MODE_CONTRASTIVE: return BM_NEED_IMAGE | BM_NEED_TEXT;
  default: /* fusion, regularized; prompts alone read no text */
    return BM_NEED_IMAGE | BM_NEED_TARGET | (o->text != BM_TEXT_PROMPT ? BM_NEED_TEXT : 0) |
           (o->allow_label_text ? BM_ALLOW_LABEL_TEXT : 0);
  }
}

/* --device and --precision against the mode; opens the GPU now, before
 * anything is read or written. NULL: the CPU. */
static bm_cuda *open_device(bm_train_opts *o) {
  int gpu = bm_device_is_cuda(o->device) == 1;
  if (!gpu && o->prec_given && o->prec != BM_PREC_FP32)
    bm_usage_die("--precision %s: the CPU computes in fp32 (use --device cuda)", bm_prec_name((bm_prec)o->prec));
  if (!gpu) return (void)(o->prec = BM_PREC_FP32), NULL;
  if (!o->prec_given) o->prec = BM_PREC_BF16;
  if (o->mode == BM_MODE_LINEAR) { /* a [C,D] head: a GPU would only add copies */
    if (!o->quiet) bm_warn("--device %s: --mode linear trains its head on the CPU", o->device);
    o->device = "cpu", o->prec = BM_PREC_FP32; /* the checkpoint says where it ran */
    return NULL;
  }
  /* written and compiled, checked against the CPU only by tests that need a
   * GPU to run (tests/gpu/NOTES.md): off until those have passed on one */
  const char *unverified = getenv("BM_CUDA_UNVERIFIED");
  if (o->mode != BM_MODE_FINETUNE && !(unverified && !strcmp(unverified, "1")))
    bm_usage_die("--device %s: --mode %s on a GPU is written but not yet verified on one; "
                 "BM_CUDA_UNVERIFIED=1 runs it (tests/gpu/NOTES.md)", o->device, bm_mode_names[o->mode]);
  char err[512];
  bm_cuda *cu = bm_cuda_open(o->device, err, sizeof err);
  if (!cu) bm_die("--device %s", err);
  if (!o->quiet) bm_warn("training on %s in %s", bm_cuda_describe(cu), bm_prec_name((bm_prec)o->prec));
  return cu;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  bm_blas_init(argv);
  bm_train_opts o = {.epochs = 10, .batch = 64, .lr = 1e-3, .fraction = 1, .pos_weight = 1, .lr_enc = 1e-5,
                     .lr_head = 1e-3, .unlock = -1, .accum = 1, .fusion_layers = 2, .n_ctx = 8, .unlock_text = -1,
                     .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .device = "cpu"};
  parse_args(argc, argv, &o);
  /* a ViT-B/16 image keeps ~140 MB of activations: 64 of them would not fit
   * the workstations this runs on; contrastive needs more in-batch
   * negatives and has --grad-checkpoint */
  if (o.mode != BM_MODE_LINEAR && !o.given[O_BATCH]) o.batch = o.mode == BM_MODE_CONTRASTIVE ? 32 : 16;
  if (o.threads) bm_set_threads((int)o.threads);
  char *lastp = bm_train_last_path(o.out);
  if (!strcmp(lastp, o.out) || (o.resume && !strcmp(o.resume, o.out)))
    bm_usage_die("-o %s: resume from %s, not from the best checkpoint", o.out, lastp);

  char *dir = bm_xstrdup(o.out); /* find out now, not after the first epoch */
  if (access(dirname(dir), W_OK)) bm_die("-o %s: cannot write in %s: %s", o.out, dir, strerror(errno));
  free(dir);
  bm_linhead ck = {0};
  char err[1024];
  if (o.resume) {
    if (bm_train_ckpt_load(o.resume, &ck, err, sizeof err)) bm_die("--resume: %s", err);
    const char *ckmode = json_string_value(json_object_get(ck.config, "mode")), *want = bm_mode_names[o.mode];
    if (!ckmode || strcmp(ckmode, want))
      bm_die("--resume: %s: a checkpoint of mode \"%s\", not %s", o.resume, ckmode ? ckmode : "?",
             o.mode == BM_MODE_LINEAR ? "a linear head" : o.mode == BM_MODE_FINETUNE ? "a finetune run" : want);
    bm_train_resume_options(&o, ck.config, ck.feat);
    long done = (long)bm_cfg_num(ck.config, "epoch", o.resume);
    if (json_is_true(json_object_get(ck.config, "finished")) || done >= o.epochs) {
      if (!o.quiet) bm_warn("%s: the run is complete (epoch %ld of %ld): nothing to do", o.resume, done, o.epochs);
      bm_linhead_free(&ck);
      free(lastp);
      free(o.val_from_ckpt);
      free(o.model_from_ckpt);
      return 0;
    }
  }
  bm_cuda *cu = open_device(&o);
  bm_model model = {0};
  /* a resumed run goes on from the towers of its checkpoint */
  int parts = o.mode == BM_MODE_FINETUNE ? BM_LOAD_VISION : BM_LOAD_VISION | BM_LOAD_TEXT;
  if (o.mode != BM_MODE_LINEAR && bm_model_load(&model, o.resume ? o.resume : o.model, parts, err, sizeof err))
    bm_die("%s: %s", o.resume ? "--resume" : "-m", err);
  if (BM_MODE_MULTIMODAL(o.mode)) mode_model_defaults(&o, &model);
  const bm_model *mp = o.mode != BM_MODE_LINEAR ? &model : NULL;
  char mode_arg[32];
  snprintf(mode_arg, sizeof mode_arg, "--mode %s", bm_mode_names[o.mode]);
  int need = mode_needs(&o), pairs = o.mode == BM_MODE_CONTRASTIVE;
  bm_trainset ds, vs = {0};
  bm_trainset_load(o.train, need, o.feat, o.resume ? ck.dims : NULL, mp, 1, pairs, mode_arg, &ds);
  if (o.resume) resume_fits(&o, &ck, &ds);
  if (o.val) {
    bm_trainset_load(o.val, need, o.feat, ds.dims, mp, 0, pairs, mode_arg, &vs);
    val_fits(&vs, &ds);
  }
  if (o.mode == BM_MODE_CONTRASTIVE && !ds.pairs) /* its class targets would be silently unused */
    bm_die("%s: a classification set (header task %s); --mode contrastive trains on image-caption pairs "
           "(bm-decode --format pairs)", ds.name, ds.multilabel ? "multilabel" : "multiclass");
  if (ds.label_text + vs.label_text && !o.quiet)
    bm_warn("%ld training and %ld validation records have a \"text\" that names a class: training on them "
            "(--allow-label-text)", ds.label_text, vs.label_text);
  long m;
  long *idx = bm_trainset_subset(&ds, o.fraction, (uint64_t)o.seed, &m);
  long *npos = bm_trainset_positives(&ds, idx, m);
  float *pw = NULL;
  if (ds.multilabel && o.pos_weight) {
    pw = bm_xmalloc(sizeof(float) * (size_t)ds.C);
    bm_pos_weight_inverse_freq(npos, m, ds.C, pw);
    for (int k = 0; k < ds.C; k++)
      if (!npos[k]) bm_warn("%s: class \"%s\" has no positive record in the training set: weight 1", ds.name, ds.classes[k]);
  }
  bm_train_task task;
  const bm_linhead *from = o.resume ? &ck : NULL;
  if (o.mode == BM_MODE_LINEAR) bm_task_linear(&task, &o, &ds, pw, from);
  else if (o.mode == BM_MODE_CONTRASTIVE && cu) bm_task_contrastive_cuda(&task, &o, &ds, &model, cu, o.prec);
  else if (o.mode == BM_MODE_CONTRASTIVE) bm_task_contrastive(&task, &o, &ds, &model);
  else if (o.mode == BM_MODE_FINETUNE && cu) bm_task_finetune_cuda(&task, &o, &ds, &model, pw, from, cu, o.prec);
  else if (o.mode == BM_MODE_FINETUNE) bm_task_finetune(&task, &o, &ds, &model, pw, from);
  else if (cu) bm_task_fusion_cuda(&task, &o, &ds, &model, pw, from, cu, o.prec);
  else bm_task_fusion(&task, &o, &ds, &model, pw, from);
  bm_train_state st = {.best = NAN, .n_train = ds.n, .n_used = m, .npos = npos};
  if (o.resume) {
    bm_train_resume_state(o.resume, &ck.ws, ck.config, o.epochs, task.opt, &st);
    bm_linhead_free(&ck);
  }
  bm_train_run(&task, &o, &ds, idx, m, o.val ? &vs : NULL, &st, lastp);
  task.free(&task);
  bm_cuda_close(cu);
  free(idx), free(lastp), free(npos), free(pw);
  bm_model_free(&model);
  bm_trainset_free(&ds);
  if (o.val) bm_trainset_free(&vs);
  free(o.val_from_ckpt);
  free(o.model_from_ckpt);
  return 0;
}
