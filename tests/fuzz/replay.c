/* replay.c - runs a fuzz harness's LLVMFuzzerTestOneInput over files, for
 * builds without libFuzzer (gcc, plain and ASan ctest runs): each argument
 * is a file or a directory of them (not recursive). A crash input kept in a
 * corpus is checked in every run; a failed check traps. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;
    size_t got;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f != NULL)
            fclose(f);
        return -1;
    }
    buf = malloc(len > 0 ? (size_t)len : 1);
    got = buf != NULL ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    if (buf == NULL || got != (size_t)len) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int i, files = 0, failed = 0;

    for (i = 1; i < argc; i++) {
        struct stat sb;
        struct dirent **names;
        int n, k;

        if (stat(argv[i], &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            failed += replay_file(argv[i]) < 0;
            files++;
            continue;
        }
        n = scandir(argv[i], &names, NULL, alphasort);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s\n", argv[i]);
            return 1;
        }
        for (k = 0; k < n; k++) {
            char path[4096];

            snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
            if (names[k]->d_name[0] != '.' && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                failed += replay_file(path) < 0;
                files++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("replayed %d inputs\n%d passed, %d failed\n", files, files - failed, failed);
    return failed > 0 || files == 0 ? 1 : 0;
}
