import CTricolor
import Glibc

extension Heap {
    func commitPacer(isSweepDone: Bool) {
        refreshPacerMemoryInputs()
        pacer.commit(isSweepDone: isSweepDone, heapLive: gcController.heapLive.load(.relaxed))
        let (trig, goal) = pacer.trigger()
        gcController.trigger.store(gcDisabled ? UInt.max : trig, .releasing)
        gcController.heapGoal.store(goal, .releasing)
        paceSweeper(trigger: trig)
    }

    /// Under a memory limit the goal depends on how much memory is mapped, which grows
    /// between cycles: Go recomputes the trigger at every test; we do it whenever the
    /// heap has grown since the last computation.
    func refreshMemoryLimitTrigger() {
        guard pacer.memoryLimit != Int.max, phase == .off else { return }
        let sys = heapStats.heapSys.load(.relaxed)
        if sys == gcController.limitTriggerHeapSys.load(.relaxed) { return }
        statsLock.withLock {
            gcController.limitTriggerHeapSys.store(sys, .releasing)
            refreshPacerMemoryInputs()
            let (trig, goal) = pacer.trigger()
            gcController.trigger.store(trig, .releasing)
            gcController.heapGoal.store(goal, .releasing)
        }
    }

    func refreshPacerMemoryInputs() {
        let heapSys = heapStats.heapSys.load(.relaxed)
        let inuse = heapStats.heapInuse.load(.relaxed)
        let metadata = UInt(heapLock.withLock { spanAlloc.sys + meta.sys + pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8 })
        let released = heapStats.heapReleased.load(.relaxed)
        pacer.mappedReady = heapSys + metadata - released
        pacer.heapFree = heapSys - inuse - min(heapSys - inuse, released)
        pacer.heapAlloc = gcController.heapLive.load(.relaxed)
    }
}
