/* label_text.h - does a text name a class? The leakage check of bm-train's
 * multimodal modes: a caption or metadata text that says the label lets a
 * model read it off the text instead of the image (seed 000). */
#ifndef BM_LABEL_TEXT_H
#define BM_LABEL_TEXT_H
#include <stddef.h>

/* The first class (index) whose name occurs in text[0..len) as whole
 * words, or -1. Case-insensitive (ASCII); a word is a run of letters,
 * digits and bytes >= 0x80, so '_', '-', spaces and punctuation all
 * separate words: "Pleural_Effusion" matches "pleural  effusion." and
 * "no-finding" matches the class "No Finding"; "mel" does not match
 * "melanoma". A name without any word character never matches. */
int bm_text_names_class(const char *text, size_t len, const char *const *classes, int C);
/* The start of text as a one-line snippet for messages: control bytes as
 * spaces, at most n-1 bytes with "..." when cut (never inside a UTF-8
 * sequence). */
void bm_text_snippet(const char *text, size_t len, char *out, size_t n);
#endif
