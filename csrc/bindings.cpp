#include <pybind11/pybind11.h>

PYBIND11_MODULE(_core, m) {
    m.doc() = "vlrl C++ core (skeleton)";
    m.def("version", [] { return "0.1.0"; });
}
