/* The bug planting_test.cc guards against, as a control: a program whose
 * RUNPATH has an empty entry (the current directory), linked against the
 * planted library. Run from a directory holding a copy, it loads that copy. */
int safemodel_planted_symbol(void);

int main(void) { return safemodel_planted_symbol() == 42 ? 0 : 1; }
