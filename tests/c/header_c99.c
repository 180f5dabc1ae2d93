/* The header compiles as C99 (-std=c99 -pedantic -Werror) and may be included twice. */
#include <rootbox.h>
#include <rootbox.h>

int main(void) {
    rootbox_container_options_t o = {0};
    o.struct_size = sizeof o;
    return rootbox_version() != NULL && o.image == NULL ? 0 : 1;
}
