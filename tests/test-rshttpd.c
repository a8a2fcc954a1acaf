/* rshttpd tests (placeholder until the suite lands in the next commit). */
int main(void) { return 77; }
