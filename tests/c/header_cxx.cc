// The header compiles as C++ (-std=c++11 -pedantic -Werror), with C linkage, included twice.
#include <rootbox.h>
#include <rootbox.h>

#include <cstring>

int main() {
    rootbox_runtime_options_t o;
    std::memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    rootbox_error_t *err = nullptr;
    rootbox_runtime_t *rt = nullptr;
    // A NULL out pointer: an error, returned (not thrown, not crashed).
    rootbox_status_t s = rootbox_runtime_new(&o, nullptr, &err);
    bool ok = s == ROOTBOX_ERROR_INVALID_ARGUMENT && err != nullptr && rt == nullptr;
    rootbox_error_free(err);
    return ok && std::strlen(rootbox_version()) > 0 ? 0 : 1;
}
