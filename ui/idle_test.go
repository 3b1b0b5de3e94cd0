package ui

import (
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// What the page keeps after it was looked at is small: the parsed and
// escaped templates of every page in one set (a set cloned per page kept
// 2.3 MiB of heap).
func TestPage_TemplatesKeepLittleOnceEveryPageWasDrawn(t *testing.T) {
	s, _ := hostileHost(t)
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	s.journal.list(s.Local.Envs[0].JournalDir) // the records are not the templates
	before := heap()
	for _, path := range []string{"/", "/history?env=prod", "/deploy/prod/20261206T100000.000Z-0001", "/jobs/prod/nightly", "/nothing"} {
		get(t, s.Handler(), path)
	}
	if kept := heap() - before; kept > 1<<20 {
		t.Errorf("the drawn pages keep %d KiB of heap, want at most 1 MiB", kept>>10)
	}
	runtime.KeepAlive(s)
}

// Once nobody has requested a page for idleFree and no stream is open,
// the page frees its templates, the journal's records and the fleet's
// read; the next request makes them again.
func TestPage_FreedWhenNobodyLooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := hostileHost(t)
		s.Now = nil
		get(t, s.Handler(), "/")
		if !s.built() || s.journal.held() == 0 {
			t.Fatal("the first request made nothing")
		}
		time.Sleep(idleFree - time.Second)
		get(t, s.Handler(), "/history?env=prod") // a request keeps it all
		time.Sleep(idleFree - time.Second)
		synctest.Wait()
		if !s.built() {
			t.Fatal("freed less than idleFree after the last request")
		}
		_, cancel, done := openStream(s, "/events") // a page open keeps it
		time.Sleep(idleFree + time.Minute)
		synctest.Wait()
		if !s.built() {
			t.Fatal("freed while a page is open")
		}
		cancel()
		<-done
		time.Sleep(idleFree + time.Minute)
		synctest.Wait()
		if s.built() || s.journal.held() != 0 {
			t.Errorf("still held %s after the last page closed: templates %t, %d records", idleFree+time.Minute, s.built(), s.journal.held())
		}
		if res, page := get(t, s.Handler(), "/"); res.StatusCode != 200 || s.journal.held() == 0 {
			t.Errorf("after it was freed: %d %.80q", res.StatusCode, page)
		}
		s.Stop()
	})
}
