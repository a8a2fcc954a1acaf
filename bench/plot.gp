# bench/plot.gp: the chart of bench/run — each variant's ratio to its baseline from the same run.
# Top: throughput (bar = variant median / baseline median, whisker = the paired per-rep ratios'
# min-max); bottom: server CPU time per operation (bulk: the sender's). 1.0 = the baseline.
# Called by bench/run as: gnuplot -e "datafile='X-plot.dat'; outfile='X.svg'; nbars=N; charttitle='T'" bench/plot.gp
# Data columns: "label" ratio paired_min paired_max cpu_ratio section
if (!exists("datafile")) datafile = "plot.dat"
if (!exists("outfile")) outfile = "plot.svg"
if (!exists("nbars")) nbars = 10
if (!exists("charttitle")) charttitle = "bench/run"

width = nbars * 38 + 260
if (width < 900) width = 900
# the terminal follows the output's name: .png (pngcairo) or anything else (svg)
if (outfile[strlen(outfile) - 3:] eq ".png") {
    set terminal pngcairo size width,900 font "sans,10" background rgb "white"
} else {
    set terminal svg size width,900 dynamic font "sans,12" background rgb "white"
}
set output outfile
set datafile missing "NaN"

# one colour per section
col(s) = (s eq "echo") ? 0x4477aa : ((s eq "http") ? 0xcc6677 : 0x228833)

set style fill solid 0.75 border lc rgb "gray20"
set boxwidth 0.7
set grid ytics lc rgb "gray80"
set xrange [-0.7:nbars - 0.3]
set key off
set lmargin 24
set rmargin 4

set multiplot layout 2,1 title charttitle noenhanced
set tmargin 2
set bmargin 1
set format x ""
set xtics 1 scale 0
# a ratio's whisker can reach 10+ on this noisy machine: the scale stops at 2.5 (whiskers clipped)
set yrange [0:2.5]
set ylabel "throughput / baseline"
plot datafile using 0:2:(col(strcol(6))) with boxes lc rgb variable, \
     "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0, \
     "" using 0:($4 > 2.3 ? 2.3 : $4):(sprintf("%.2f", $2)) with labels offset 0,0.8 font ",9", \
     1.0 with lines lc rgb "gray30" dt 2 lw 1.5

set tmargin 1
set bmargin 16
set format x "%g"
set xtics rotate by 40 right font ",10" noenhanced
set yrange [0:2]
set ylabel "CPU per op / baseline (lower = better)"
plot datafile using 0:5:(col(strcol(6))):xtic(1) with boxes lc rgb variable, \
     "" using 0:5:(sprintf("%.2f", $5)) with labels offset 0,0.6 font ",9", \
     1.0 with lines lc rgb "gray30" dt 2 lw 1.5
unset multiplot
