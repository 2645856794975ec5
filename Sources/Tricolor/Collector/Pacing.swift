import CTricolor
import Glibc

extension Heap {
    func commitPacer(isSweepDone: Bool) {
        refreshPacerMemoryInputs()
        pacer.commit(isSweepDone: isSweepDone, heapLive: load(.heapLive))
        let (trig, goal) = pacer.trigger()
        store(.trigger, gcDisabled ? UInt.max : trig)
        store(.heapGoal, goal)
        paceSweeper(trigger: trig)
    }

    /// Under a memory limit the goal depends on how much memory is mapped, which grows
    /// between cycles: Go recomputes the trigger at every test; we do it whenever the
    /// heap has grown since the last computation.
    func refreshMemoryLimitTrigger() {
        guard pacer.memoryLimit != Int.max, phase == .off else { return }
        let sys = load(.heapSys)
        if sys == load(.limitTriggerHeapSys) { return }
        statsLock.withLock {
            store(.limitTriggerHeapSys, sys)
            refreshPacerMemoryInputs()
            let (trig, goal) = pacer.trigger()
            store(.trigger, trig)
            store(.heapGoal, goal)
        }
    }

    func refreshPacerMemoryInputs() {
        let heapSys = load(.heapSys)
        let inuse = load(.heapInuse)
        let metadata = UInt(heapLock.withLock { spanAlloc.sys + meta.sys + pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8 })
        let released = load(.heapReleased)
        pacer.mappedReady = heapSys + metadata - released
        pacer.heapFree = heapSys - inuse - min(heapSys - inuse, released)
        pacer.heapAlloc = load(.heapLive)
    }
}
