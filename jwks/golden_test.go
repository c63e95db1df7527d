package jwks_test

import (
	"flag"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite golden files")

func writeText(w io.Writer, mf *dto.MetricFamily) {
	_, _ = expfmt.MetricFamilyToText(w, mf)
}
