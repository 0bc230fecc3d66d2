package schedule_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/godwit/godwit/oma/schedule"
)

func ExampleParse() {
	s, err := schedule.Parse(schedule.Spec{
		Interval: "4h",
		Window:   &schedule.Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"},
	}, 15*time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	last := time.Date(2026, 7, 1, 3, 0, 0, 0, time.UTC) // 05:00 in Berlin
	fmt.Println(s)
	fmt.Println(s.Next(last))
	// Output:
	// every 4h0m0s inside 22:00-06:00 Europe/Berlin
	// 2026-07-01 20:00:00 +0000 UTC
}

func ExampleFieldError() {
	_, err := schedule.Parse(schedule.Spec{Cron: "0 24 * * *"}, 0)
	var fe *schedule.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field)
		fmt.Println(fe.Msg)
	}
	// Output:
	// sync.cron
	// hour field (2nd of 5) "24": 24 is out of range 0-23
}
