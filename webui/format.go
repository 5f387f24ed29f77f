package webui

import (
	"fmt"
	"html/template"
	"time"
)

// funcs are the templates' formatting functions.
var funcs = template.FuncMap{
	"bytes":   humanBytes,
	"ratio":   ratio,
	"percent": percent,
	"when":    when,
	"ago":     ago,
	"age":     age,
}

// humanBytes is n in binary units with three significant digits, as
// "1.50 GiB"; below 1 KiB, in bytes.
func humanBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	i := -1
	for (f >= 1024 || f <= -1024) && i < len(units)-1 {
		f /= 1024
		i++
	}
	switch {
	case f >= 100 || f <= -100:
		return fmt.Sprintf("%.0f %ciB", f, units[i])
	case f >= 10 || f <= -10:
		return fmt.Sprintf("%.1f %ciB", f, units[i])
	}
	return fmt.Sprintf("%.2f %ciB", f, units[i])
}

// ratio is part/whole in [0, 1], for a <meter>; 0 when whole is not
// positive.
func ratio(part, whole int64) float64 {
	if whole <= 0 || part <= 0 {
		return 0
	}
	return min(1, float64(part)/float64(whole))
}

// percent is part/whole as "12.3%".
func percent(part, whole int64) string {
	return fmt.Sprintf("%.1f%%", 100*ratio(part, whole))
}

// when is t in UTC to the second; "never" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago is how long before now t was, to the second, as "3s", "2m5s".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return age(now.Sub(t))
}

// age is d rounded to the second (to the minute beyond a day).
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d >= 24*time.Hour {
		d = d.Round(time.Minute)
		days := d / (24 * time.Hour)
		if rest := d - days*24*time.Hour; rest > 0 {
			return fmt.Sprintf("%dd%s", days, rest)
		}
		return fmt.Sprintf("%dd", days)
	}
	return d.Round(time.Second).String()
}
